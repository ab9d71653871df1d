"""The customization engine: validate everything, then run the tasks in dependency order on one disk."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from atoll_common.errors import AtollError
from customization import disk as d
from customization import distros, ordering, tasks
from customization import properties as schema
from customization.errors import DiskError, TaskFailed, UnsupportedImage
from customization.guestfs import ext
from customization.guestfs.base import GuestFS
from customization.guestfs.debugfs import DebugfsFS
from customization.guestfs.mounted import MountedFS
from customization.params import InstanceParams
from customization.properties import NormalizedProperties
from customization.report import Report, Status, TaskOutcome
from customization.tasks.base import TaskContext, TaskModule

LOG = logging.getLogger(__name__)
EXT = ("ext2", "ext3", "ext4")
# What the Linux tasks read: listed and read in two debugfs runs when the guest is opened.
PREFETCH = {
    "/": (),
    "/etc": ("passwd", "group", "shadow", "hostname", "hosts", "os-release", "machine-id", "fstab"),
    "/etc/ssh": ("sshd_config",),
    "/etc/selinux": ("config",),
    "/root": (),
    "/root/.ssh": ("authorized_keys",),
    "/home": (),
    "/var/lib/dbus": ("machine-id",),
}
Backend = Literal["auto", "debugfs", "mount"]


def all_tasks() -> tuple[TaskModule, ...]:
    """The engine's tasks in run order (validated: unique names, known references, no cycle)."""
    return tuple(ordering.order(tasks.ALL))


def skip_reason(meta_module: TaskModule, props: NormalizedProperties, params: InstanceParams) -> str | None:
    """Why a task will not run, or None when it runs."""
    meta = meta_module.META
    if meta.excludable and props.is_excluded(meta.name, *meta.aliases):
        return f"EXCLUDE_TASK_{meta.name} is set"
    if meta.needs_guest and props.exclude_mounted:
        return "EXCLUDE_MOUNTED_TASKS is set"
    if meta.resize and props.exclude_resize:
        return "EXCLUDE_FilesystemResize_TASKS is set"
    family = props.os_family or "linux"
    if family not in meta.os_families:
        return f"not a task for {family}"
    if meta.activate_by and not any(_given(key, props, params) for key in meta.activate_by):
        return f"nothing asked ({' or '.join(meta.activate_by)} not given)"
    return None


def _given(key: str, props: NormalizedProperties, params: InstanceParams) -> bool:
    if key.isupper():
        return bool(props.raw.get(key, "").strip())
    return bool(getattr(params, key))


class _Session:
    """Owns what a run opens (guest filesystem, OS adapter) and closes it whatever happens."""

    def __init__(self, disk: d.Disk, fstype: str, backend: Backend) -> None:
        self.disk, self.fstype, self.backend = disk, fstype, backend
        self.ctx: TaskContext | None = None
        self._guest: GuestFS | None = None
        self._os: distros.Linux | None = None
        self._sb: dict[str, str] | None = None

    def ext_prepare(self) -> dict[str, str]:
        assert self.ctx is not None
        if self._sb is None:
            self._sb = ext.prepare(self.disk, self.ctx.root)
        return self._sb

    def guest(self) -> GuestFS:
        assert self.ctx is not None
        if self._guest is None:
            root = self.ctx.root
            if self.fstype in EXT:
                self.ext_prepare()
            if self.fstype in EXT and self.backend != "mount":
                self._guest = DebugfsFS(ext.spec(self.disk, root))
                self._guest.prefetch(PREFETCH)
            else:
                self._guest = MountedFS(self.disk.path, root.offset, root.bytes, self.fstype)
            self.ctx.facts["access"] = self._guest.kind
            self._os = distros.detect(self._guest)  # also turns on SELinux label handling
            self.ctx.facts["guest_os"] = self._os.release.get("PRETTY_NAME", self._os.name)
        return self._guest

    def os(self) -> distros.Linux:
        self.guest()
        assert self._os is not None
        return self._os

    def flush(self) -> None:
        if self._guest is not None:
            self._guest.flush()

    def close(self, *, check: bool) -> None:
        guest, self._guest = self._guest, None
        if guest is not None:
            try:
                if check:
                    guest.flush()
                    if isinstance(guest, DebugfsFS):
                        guest.verify()
            finally:
                guest.close()
        if check and self.ctx is not None:
            d.verify_table(self.disk)
            if self.fstype in EXT and self._sb is not None:
                ext.check(self.disk, self.ctx.root)


def _choose(
    disk: d.Disk, table: d.PartitionTable, props: NormalizedProperties, backend: Backend
) -> tuple[d.Partition, str]:
    if (props.os_family or "linux") != "linux":
        raise UnsupportedImage(f"OSFAMILY={props.os_family} is not supported yet (Linux only)")
    root, fstype = d.find_root(disk, table, props.root_partition)
    if fstype not in d.LINUX_FILESYSTEMS:
        raise UnsupportedImage(f"partition {root.number} holds {fstype}, not ext2/3/4, xfs or btrfs")
    if (fstype not in EXT or backend == "mount") and os.geteuid() != 0:
        raise UnsupportedImage(f"customizing {fstype} mounts it through a loop device, which needs root")
    if backend == "debugfs" and fstype not in EXT:
        raise UnsupportedImage(f"the debugfs backend handles ext2/3/4 only, not {fstype}")
    d.check_fits(disk, root, fstype)
    if props.swap is not None and props.swap.disk_letter is not None:
        raise UnsupportedImage(
            f"SWAP={props.swap.disk_letter} needs a second disk; only the root disk is customized"
        )
    return root, fstype


def data_disk(disk: d.Disk, props: NormalizedProperties) -> str | None:
    """Why ``disk`` is a data disk to leave as it is (no partition table, or no Linux filesystem on its
    partitions), or None: an image naming OSFAMILY or ROOT_PARTITION is a system, customized or failed."""
    if props.os_family is not None or props.root_partition is not None:
        return None
    try:
        table = d.read_table(disk)
    except DiskError as e:
        return f"a data disk, left as it is: {e}"
    if not d.linux_filesystems(disk, table):
        return "a data disk, left as it is: no Linux filesystem on its partitions (and no OSFAMILY)"
    return None


def _emit(report: Report, outcome: TaskOutcome, on_progress: Callable[[TaskOutcome], None] | None) -> None:
    report.outcomes.append(outcome)
    LOG.info("%s", outcome.line())
    if on_progress is not None:
        on_progress(outcome)


def _run_tasks(
    plan: Sequence[tuple[TaskModule, str | None]],
    ctx: TaskContext,
    report: Report,
    on_progress: Callable[[TaskOutcome], None] | None,
    flush: Callable[[], None],
) -> None:
    for module, reason in plan:
        name = module.META.name
        if reason is not None:
            _emit(report, TaskOutcome(name, Status.SKIPPED, reason), on_progress)
            continue
        start = time.monotonic()
        try:
            result = module.run(ctx)
            flush()  # queued writes land now, so an error belongs to this task
        except (AtollError, OSError) as e:  # CustomizationError, or ToolError from a tool the task ran
            message = str(e) if isinstance(e, AtollError) else f"{type(e).__name__}: {e.strerror or e}"
            _emit(report, TaskOutcome(name, Status.FAILED, message, time.monotonic() - start), on_progress)
            raise TaskFailed(name, e, report) from e
        status = Status.RAN if result.changed else Status.UNCHANGED
        _emit(report, TaskOutcome(name, status, result.message, time.monotonic() - start), on_progress)


def customize(
    disk: str | os.PathLike[str],
    properties: Mapping[str, str],
    params: InstanceParams,
    *,
    on_progress: Callable[[TaskOutcome], None] | None = None,
    grow_to: int | None = None,
    backend: Backend = "auto",
    data_disks: bool = False,
) -> Report:
    """Customize the raw ``disk`` (file or block device) for one instance; see docs/customization.md.

    Everything is validated before the first byte is written. Raises a CustomizationError subclass (one
    clear line); a failing task raises TaskFailed, whose ``report`` holds the outcomes up to it. With
    ``data_disks``, a disk that is no Linux system and whose image names no OSFAMILY or ROOT_PARTITION
    (a data disk, an ISO) is left as it is instead of failing.
    """
    started = time.monotonic()
    props = schema.validate(params.effective_properties(properties))
    report = Report(disk=os.fspath(disk), warnings=list(props.warnings))
    modules = all_tasks()
    target = d.open_disk(disk)
    untouched = "EXCLUDE_ALL_TASKS is set" if props.exclude_all else None
    if untouched is None and data_disks:
        untouched = data_disk(target, props)
    if untouched is not None:
        d.grow_disk(target, grow_to)
        for module in modules:
            _emit(report, TaskOutcome(module.META.name, Status.SKIPPED, untouched), on_progress)
        report.seconds = time.monotonic() - started
        return report
    table = d.read_table(target)
    root, fstype = _choose(target, table, props, backend)
    plan = [(m, skip_reason(m, props, params)) for m in modules]
    if table.primary_gpt_corrupt:  # the first write: rebuild the primary GPT while the backup is findable
        report.warnings.append("the primary GPT header was corrupt; rebuilt from the backup")
        d.relocate_gpt_backup(target)
    target = d.grow_disk(target, grow_to)
    table = d.read_table(target)
    session = _Session(target, fstype, backend)
    ctx = TaskContext(
        target,
        table,
        table.get(root.number),
        fstype,
        props,
        params,
        session.guest,
        session.os,
        session.ext_prepare,
        report.warnings,
        report.facts,
    )
    session.ctx = ctx
    report.facts.update({"table": table.label, "root_partition": root.number, "filesystem": fstype})
    ok = False
    try:
        with ctx.stack:
            for module, reason in plan:
                prepare = getattr(module, "prepare", None)
                if reason is None and prepare is not None:
                    prepare(ctx)
            _run_tasks(plan, ctx, report, on_progress, session.flush)
            ok = True
    finally:
        session.close(check=ok)
    report.seconds = time.monotonic() - started
    return report
