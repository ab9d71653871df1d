"""Loop devices and mounts (root only), always undone: a failed run leaves neither behind."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator

from atoll_common import process
from customization.errors import FilesystemError, ToolError

LOG = logging.getLogger(__name__)
MOUNT_OPTIONS = ("nosuid", "nodev", "noexec")


def attach(path: str, offset: int, size: int, *, read_only: bool = False) -> str:
    """A loop device over bytes [offset, offset+size) of ``path``; no partition scan, no udev needed."""
    argv = ["losetup", "--find", "--show", "--offset", str(offset), "--sizelimit", str(size)]
    if read_only:
        argv.append("--read-only")
    device = process.run([*argv, path]).stdout.strip()
    if not device.startswith("/dev/loop"):
        raise ToolError(f"losetup returned {device!r} instead of a loop device")
    LOG.debug("attached %s at offset %d size %d as %s", path, offset, size, device)
    return device


def detach(device: str) -> None:
    for attempt in range(10):
        result = process.run(["losetup", "--detach", device], check=False)
        if result.exit_code == 0:
            return
        time.sleep(0.1 * (attempt + 1))  # udev or a scanner may still hold it for a moment
    raise ToolError(f"cannot detach {device}: {process.last_line(result.stderr)}")


@contextlib.contextmanager
def loop_device(path: str, offset: int, size: int, *, read_only: bool = False) -> Iterator[str]:
    device = attach(path, offset, size, read_only=read_only)
    try:
        yield device
    finally:
        detach(device)


def mount(device: str, fstype: str, target: str, extra: tuple[str, ...] = ()) -> None:
    options = ",".join((*MOUNT_OPTIONS, *extra))
    result = process.run(["mount", "-t", fstype, "-o", options, device, target], check=False)
    if result.exit_code != 0:
        raise FilesystemError(f"cannot mount the {fstype} filesystem: {process.last_line(result.stderr)}")


def umount(target: str) -> None:
    for attempt in range(10):
        result = process.run(["umount", target], check=False)
        if result.exit_code == 0:
            return
        time.sleep(0.1 * (attempt + 1))
    raise ToolError(f"cannot unmount {target}: {process.last_line(result.stderr)}")


@contextlib.contextmanager
def mounted(path: str, offset: int, size: int, fstype: str) -> Iterator[str]:
    """Mount a partition of ``path`` on a private directory with nosuid,nodev,noexec; yield the directory."""
    extra = ("nouuid",) if fstype == "xfs" else ()  # clones of one image share their XFS UUID
    with contextlib.ExitStack() as stack:
        device = stack.enter_context(loop_device(path, offset, size))
        target = tempfile.mkdtemp(prefix="atoll-guest-")
        stack.callback(os.rmdir, target)
        mount(device, fstype, target, extra)
        stack.callback(umount, target)
        yield target
