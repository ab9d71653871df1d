"""Helpers shared by the task tests: run the engine with only some tasks, and look at the result."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from customization.engine import all_tasks, customize
from customization.params import InstanceParams
from customization.report import Report, Status
from tests.images.build import ImageInfo


def only(*names: str) -> dict[str, str]:
    """Properties that exclude every task except ``names``."""
    return {f"EXCLUDE_TASK_{m.META.name}": "yes" for m in all_tasks() if m.META.name not in names}


def run(
    info: ImageInfo,
    params: InstanceParams,
    tasks: Iterable[str] = (),
    props: Mapping[str, str] | None = None,
    **kw: object,
) -> Report:
    merged = {**(only(*tasks) if tasks else {}), **(props or {})}
    report = customize(Path(info.path), merged, params, **kw)  # type: ignore[arg-type]
    assert report.ok
    return report


def status(report: Report, name: str) -> Status:
    return report.outcome(name).status
