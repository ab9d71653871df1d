"""FilesystemResize: grow the root filesystem to fill its partition (ext offline; xfs, btrfs mounted)."""

from __future__ import annotations

import logging
import os
import re

from atoll_common import process
from customization.errors import FilesystemError, UnsupportedImage
from customization.guestfs import ext
from customization.guestfs.mounted import MountedFS
from customization.tasks.base import TaskContext, TaskMeta, TaskResult

LOG = logging.getLogger(__name__)

META = TaskMeta(
    name="FilesystemResize",
    summary="Grow the root filesystem to fill its partition; never shrink it",
    runs_after=("FixPartitionTable",),
    needs_guest=False,
    resize=True,
    aliases=("FilesystemResizeUnmounted", "FilesystemResizeMounted"),
)


def _mib(n: int) -> str:
    return f"{n >> 20} MiB"


def _resize_ext(ctx: TaskContext) -> TaskResult:
    before, after = ext.resize(ctx.disk, ctx.root, ctx.ext_prepare())
    if before == after:
        return TaskResult(f"{ctx.fstype} already fills partition {ctx.root.number}", changed=False)
    return TaskResult(f"{ctx.fstype} grown from {_mib(before)} to {_mib(after)}")


def _mounted(ctx: TaskContext) -> MountedFS:
    guest = ctx.guest
    if not isinstance(guest, MountedFS):
        raise UnsupportedImage(f"resizing {ctx.fstype} needs the mount backend")
    return guest


def _fs_size(path: str) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def _resize_xfs(ctx: TaskContext) -> TaskResult:
    mnt = _mounted(ctx).mountpoint
    info = process.run(["xfs_info", mnt]).stdout
    match = re.search(r"^data\s+=\s+bsize=(\d+)\s+blocks=(\d+)", info, re.M)
    if not match:
        raise FilesystemError("cannot read the XFS data size from xfs_info")
    before = int(match.group(1)) * int(match.group(2))
    if before > ctx.root.bytes:
        raise FilesystemError(f"XFS ({before} bytes) is larger than partition {ctx.root.number}; refusing")
    process.run(["xfs_growfs", "-d", mnt])
    _fs_size(mnt)
    changed = ctx.root.bytes - before >= 1 << 20
    return TaskResult(f"xfs grown from {_mib(before)} to {_mib(ctx.root.bytes)}" if changed else "", changed)


def _resize_btrfs(ctx: TaskContext) -> TaskResult:
    mnt = _mounted(ctx).mountpoint
    show = process.run(["btrfs", "filesystem", "show", "--raw", mnt]).stdout
    sizes = [int(s) for s in re.findall(r"devid\s+\d+\s+size\s+(\d+)", show)]
    if len(sizes) != 1:
        raise UnsupportedImage("only single-device btrfs root filesystems are supported")
    before = sizes[0]
    if before > ctx.root.bytes:
        raise FilesystemError(f"btrfs ({before} bytes) is larger than partition {ctx.root.number}; refusing")
    if ctx.root.bytes - before < 1 << 20:
        return TaskResult("btrfs already fills its partition", changed=False)
    process.run(["btrfs", "filesystem", "resize", "max", mnt])
    return TaskResult(f"btrfs grown from {_mib(before)} to {_mib(ctx.root.bytes)}")


def run(ctx: TaskContext) -> TaskResult:
    if ctx.fstype in ("ext2", "ext3", "ext4"):
        return _resize_ext(ctx)
    if ctx.props.exclude_mounted:
        return TaskResult(
            f"{ctx.fstype} grows only while mounted, and EXCLUDE_MOUNTED_TASKS is set", changed=False
        )
    if ctx.fstype == "xfs":
        return _resize_xfs(ctx)
    if ctx.fstype == "btrfs":
        return _resize_btrfs(ctx)
    raise UnsupportedImage(f"cannot resize a {ctx.fstype} filesystem")
