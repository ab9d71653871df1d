"""What a task is: validated metadata (TaskMeta), the context it runs in, and what it returns."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from customization.errors import TaskOrderError

if TYPE_CHECKING:
    from customization.disk import Disk, Partition, PartitionTable
    from customization.distros import Linux
    from customization.guestfs.base import GuestFS
    from customization.params import InstanceParams
    from customization.properties import NormalizedProperties

_NAME_RE = re.compile(r"^[A-Z][A-Za-z0-9]+$")
OS_FAMILIES_ALL = ("linux", "windows", "windows-legacy", "freebsd", "netbsd", "openbsd")


@dataclass(frozen=True)
class TaskMeta:
    """A task's contract; the engine validates it and orders tasks by ``runs_after``/``runs_before``."""

    name: str
    summary: str
    runs_after: tuple[str, ...] = ()
    runs_before: tuple[str, ...] = ()
    needs_guest: bool = True  # edits files in the guest (skipped by EXCLUDE_MOUNTED_TASKS)
    os_families: tuple[str, ...] = ("linux",)
    activate_by: tuple[str, ...] = ()  # InstanceParams fields (lower case) or properties (upper); () = always
    excludable: bool = True
    resize: bool = False  # skipped by EXCLUDE_FilesystemResize_TASKS
    aliases: tuple[str, ...] = ()  # snf-image names whose EXCLUDE_TASK_ also excludes this task

    def __post_init__(self) -> None:
        for name in (self.name, *self.aliases):
            if not _NAME_RE.match(name):
                raise TaskOrderError(f"task name {name!r} must be CamelCase letters and digits")
        if not self.summary or "\n" in self.summary:
            raise TaskOrderError(f"task {self.name}: summary must be one line")
        bad = set(self.os_families) - set(OS_FAMILIES_ALL)
        if bad:
            raise TaskOrderError(f"task {self.name}: unknown OS families {sorted(bad)}")
        if self.name in self.runs_after or self.name in self.runs_before:
            raise TaskOrderError(f"task {self.name} cannot run after or before itself")


@dataclass(frozen=True)
class TaskResult:
    """``changed`` False means the guest already was as asked (status 'unchanged')."""

    message: str = ""
    changed: bool = True


@dataclass
class TaskContext:
    """What a task may use. Tasks write only through ``guest`` (inside the guest root) or the disk layer."""

    disk: Disk
    table: PartitionTable
    root: Partition
    fstype: str
    props: NormalizedProperties
    params: InstanceParams
    open_guest: Callable[[], GuestFS]
    open_os: Callable[[], Linux]
    ext_prepare: Callable[[], dict[str, str]]
    warnings: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # closed by the engine
    scratch: dict[str, object] = field(default_factory=dict)  # what prepare() hands to run()

    @property
    def guest(self) -> GuestFS:
        """The guest root filesystem, opened on first use and closed by the engine."""
        return self.open_guest()

    @property
    def os(self) -> Linux:
        return self.open_os()

    def warn(self, message: str) -> None:
        self.warnings.append(message)


class TaskModule(Protocol):
    """A task module: a ``META`` and a ``run``; it may also define ``prepare(ctx)``, which the engine calls
    for every active task before the first one runs (to start slow work in the background)."""

    META: TaskMeta

    def run(self, ctx: TaskContext) -> TaskResult: ...
