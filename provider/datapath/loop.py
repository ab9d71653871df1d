"""Loop devices: bind a file (direct I/O), find the devices bound to a file, tell whether one is in use."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

from atoll_common import process
from provider.errors import DataPathError, InUse

LOG = logging.getLogger(__name__)
SYS_BLOCK = Path("/sys/block")
BLKFLSBUF = 0x1261  # linux/fs.h: _IO(0x12, 97)


def _sys(dev: str) -> Path:
    return SYS_BLOCK / os.path.basename(dev)


def backing_file(dev: str) -> str | None:
    """The file ``dev`` is bound to (``" (deleted)"`` suffix kept), or None when it is unbound."""
    try:
        return (_sys(dev) / "loop" / "backing_file").read_text().rstrip("\n")
    except OSError:
        return None


def find(path: str | os.PathLike[str]) -> list[str]:
    """Every loop device bound to ``path`` (sysfs holds the full name, unlike LOOP_GET_STATUS)."""
    wanted = str(path)
    found = []
    for entry in sorted(SYS_BLOCK.glob("loop*")):
        if backing_file(entry.name) == wanted:
            found.append(f"/dev/{entry.name}")
    return found


def attach(
    run: process.Runner,
    path: str | os.PathLike[str],
    *,
    readonly: bool,
    direct_io: bool = True,
    device: str | None = None,
) -> str:
    """Bind ``path`` to a free loop device (``device`` if it is still free), with direct I/O (no second
    page cache) unless told not to; return the device."""
    argv = ["losetup", f"--direct-io={'on' if direct_io else 'off'}"]
    if readonly:
        argv.append("--read-only")
    dev = _bind_at(run, argv, path, device) if device is not None else None
    if dev is None:
        try:
            dev = run([*argv, "--find", "--show", str(path)]).stdout.strip()
        except process.ProcessError as e:
            raise DataPathError(reason=f"cannot bind {path} to a loop device: {e.stderr.strip()}") from e
    if direct_io and not uses_direct_io(dev):
        # NOTE: losetup falls back to buffered I/O silently when the file cannot do O_DIRECT.
        LOG.warning("%s on %s runs without direct I/O (the file refused O_DIRECT)", dev, path)
    return dev


def _bind_at(run: process.Runner, argv: list[str], path: str | os.PathLike[str], device: str) -> str | None:
    try:
        run([*argv, device, str(path)])
    except process.ProcessError as e:
        LOG.info("%s is not free (%s): binding %s to another loop device", device, e.stderr.strip(), path)
        return None
    return device


def drop_cache(dev: str) -> None:
    """Write back, then forget, the pages the kernel caches for ``dev`` (BLKFLSBUF): after the content
    under it was replaced, the next read goes down to the new one."""
    fd = os.open(dev, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, BLKFLSBUF, 0)
    finally:
        os.close(fd)


def uses_direct_io(dev: str) -> bool:
    try:
        return (_sys(dev) / "loop" / "dio").read_text().strip() == "1"
    except OSError:
        return False


def partscan(dev: str) -> bool:
    """Loop devices with partitions are someone else's (Atoll never asks for partition scanning)."""
    try:
        return (_sys(dev) / "loop" / "partscan").read_text().strip() == "1"
    except OSError:
        return False


def size(dev: str) -> int:
    return int((_sys(dev) / "size").read_text()) * 512


def is_readonly(dev: str) -> bool:
    return (_sys(dev) / "ro").read_text().strip() == "1"


def refresh(run: process.Runner, dev: str) -> None:
    """Make ``dev`` see its file's new size (``losetup -c``)."""
    run(["losetup", "--set-capacity", dev])


def _openers(dev: str) -> list[int]:
    """Pids (other than ours) holding ``dev`` open."""
    try:
        rdev = os.stat(dev).st_rdev
    except OSError:
        return []
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(fd)
            except OSError:
                continue
            if st.st_rdev == rdev and (st.st_mode & 0o170000) == 0o060000:
                pids.append(int(proc.name))
                break
    return pids


def in_use(dev: str) -> str | None:
    """Why ``dev`` cannot be released now (mounted, held by a device mapper or a process), or None."""
    holders = sorted(p.name for p in (_sys(dev) / "holders").glob("*"))
    if holders:
        return f"{dev} is held by {', '.join(holders)}"
    try:
        fd = os.open(dev, os.O_RDONLY | os.O_EXCL)
    except OSError as e:
        if e.errno == errno.EBUSY:
            return f"{dev} is in use (mounted or opened exclusively)"
        if e.errno == errno.ENOENT:
            return None
        raise DataPathError(reason=f"cannot check {dev}: {e.strerror}") from e
    os.close(fd)
    pids = _openers(dev)
    if pids:
        return f"{dev} is open by process(es) {', '.join(map(str, pids))}"
    return None


def check_free(dev: str, what: str, ref: str) -> None:
    reason = in_use(dev)
    if reason:
        raise InUse(what=what, ref=ref, reason=reason)


def detach(run: process.Runner, dev: str) -> None:
    """Unbind ``dev``; a device already gone is not an error."""
    if backing_file(dev) is None:
        return
    try:
        run(["losetup", "--detach", dev])
    except process.ProcessError as e:
        if backing_file(dev) is None:
            return
        raise DataPathError(reason=f"cannot release {dev}: {e.stderr.strip()}") from e
