"""Task metadata validation and dependency ordering."""

from __future__ import annotations

import types

import pytest

from customization import ordering
from customization.engine import all_tasks
from customization.errors import TaskOrderError
from customization.tasks.base import TaskMeta, TaskResult


def _task(
    name: str, after: tuple[str, ...] = (), before: tuple[str, ...] = (), aliases: tuple[str, ...] = ()
):
    module = types.ModuleType(name)
    module.META = TaskMeta(
        name=name, summary=f"{name} task", runs_after=after, runs_before=before, aliases=aliases
    )  # type: ignore[attr-defined]
    module.run = lambda ctx: TaskResult()  # type: ignore[attr-defined]
    return module


def names(modules) -> list[str]:
    return [m.META.name for m in modules]


def test_order_honours_after_and_before() -> None:
    a, b, c = _task("Alpha", after=("Charlie",)), _task("Bravo", before=("Charlie",)), _task("Charlie")
    assert names(ordering.order([a, b, c])) == ["Bravo", "Charlie", "Alpha"]


def test_cycle_is_an_error() -> None:
    with pytest.raises(TaskOrderError, match="cycle among: Alpha, Bravo"):
        ordering.order([_task("Alpha", after=("Bravo",)), _task("Bravo", after=("Alpha",))])


def test_unknown_reference_is_an_error() -> None:
    with pytest.raises(TaskOrderError, match="Alpha refers to unknown task Nope"):
        ordering.order([_task("Alpha", after=("Nope",))])


def test_duplicate_names_and_aliases_are_errors() -> None:
    with pytest.raises(TaskOrderError, match="used twice"):
        ordering.order([_task("Alpha"), _task("Bravo", aliases=("ALPHA",))])


def test_meta_is_validated() -> None:
    with pytest.raises(TaskOrderError, match="CamelCase"):
        TaskMeta(name="bad name", summary="x")
    with pytest.raises(TaskOrderError, match="itself"):
        TaskMeta(name="Alpha", summary="x", runs_after=("Alpha",))
    with pytest.raises(TaskOrderError, match="unknown OS families"):
        TaskMeta(name="Alpha", summary="x", os_families=("beos",))
    with pytest.raises(TaskOrderError, match="no TaskMeta"):
        ordering.order([types.ModuleType("empty")])


def test_engine_task_order() -> None:
    order = names(all_tasks())
    assert order[:2] == ["FixPartitionTable", "FilesystemResize"]
    assert order[-1] == "EnforcePersonality"
    assert order.index("ChangePassword") < order.index("InjectSSHKeys")
    assert set(order) == {
        "FixPartitionTable", "FilesystemResize", "AddSwap", "AssignHostname", "ChangePassword",
        "InjectSSHKeys", "DeleteSSHKeys", "ChangeMachineId", "EnforcePersonality",
    }  # fmt: skip
    for module in all_tasks():
        assert module.__doc__ and module.__doc__.startswith(module.META.name + ":")
