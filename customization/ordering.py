"""Validate task metadata and order tasks: a topological sort over runs_after/runs_before."""

from __future__ import annotations

from collections.abc import Sequence

from customization.errors import TaskOrderError
from customization.tasks.base import TaskMeta, TaskModule


def validate(modules: Sequence[TaskModule]) -> dict[str, TaskModule]:
    """Every module has a TaskMeta and a run(); names (and aliases) are unique; references exist."""
    by_name: dict[str, TaskModule] = {}
    seen: set[str] = set()
    for module in modules:
        meta = getattr(module, "META", None)
        if not isinstance(meta, TaskMeta):
            raise TaskOrderError(f"{getattr(module, '__name__', module)!r} has no TaskMeta called META")
        if not callable(getattr(module, "run", None)):
            raise TaskOrderError(f"task {meta.name} has no run(ctx) function")
        for name in (meta.name, *meta.aliases):
            if name.upper() in seen:
                raise TaskOrderError(f"task name {name} is used twice")
            seen.add(name.upper())
        by_name[meta.name] = module
    for module in by_name.values():
        for ref in (*module.META.runs_after, *module.META.runs_before):
            if ref not in by_name:
                raise TaskOrderError(f"task {module.META.name} refers to unknown task {ref}")
    return by_name


def order(modules: Sequence[TaskModule]) -> list[TaskModule]:
    """Tasks in an order that honours every runs_after/runs_before; ties keep the given order."""
    by_name = validate(modules)
    names = list(by_name)
    after: dict[str, set[str]] = {n: set(by_name[n].META.runs_after) for n in names}
    for n in names:
        for later in by_name[n].META.runs_before:
            after[later].add(n)
    done: list[str] = []
    pending = list(names)
    while pending:
        ready = next((n for n in pending if after[n] <= set(done)), None)
        if ready is None:
            raise TaskOrderError(f"task dependencies form a cycle among: {', '.join(sorted(pending))}")
        done.append(ready)
        pending.remove(ready)
    return [by_name[n] for n in done]
