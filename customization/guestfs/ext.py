"""ext2/3/4 without root: e2fsprogs on ``disk?offset=N``, with guards for their known traps."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile

from atoll_common import process
from customization.disk import Disk, Partition
from customization.errors import FilesystemError
from customization.guestfs import loop

LOG = logging.getLogger(__name__)
_FSCK_OK = (0, 1)  # 1: errors were corrected


def spec(disk: Disk, part: Partition) -> str:
    """The ``image?offset=`` name every e2fsprogs tool accepts."""
    return f"{disk.path}?offset={part.offset}"


def superblock(disk: Disk, part: Partition) -> dict[str, str]:
    out = process.run(["dumpe2fs", "-h", spec(disk, part)]).stdout
    fields = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def is_dirty(sb: dict[str, str]) -> bool:
    """A journal to replay, or a state other than clean (a template cloned from a running VM)."""
    return (
        "needs_recovery" in sb.get("Filesystem features", "").split() or sb.get("Filesystem state") != "clean"
    )


def fs_bytes(sb: dict[str, str]) -> int:
    return int(sb["Block count"]) * int(sb["Block size"])


def _fsck(target: str, what: str) -> None:
    result = process.run(["e2fsck", "-f", "-y", target], check=False)
    if result.exit_code not in _FSCK_OK:
        detail = process.last_line(result.stdout) or process.last_line(result.stderr)
        raise FilesystemError(f"e2fsck could not repair {what} (exit {result.exit_code}): {detail}")


def _copy_data(src: int, dst: int, start: int, length: int, dst_start: int) -> None:
    """Copy only the allocated extents of src[start:start+length] to dst at dst_start (holes stay holes)."""
    pos, end = start, start + length
    while pos < end:
        try:
            data = os.lseek(src, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after pos
            return
        if data >= end:
            return
        hole = min(os.lseek(src, data, os.SEEK_HOLE), end)
        off_in, off_out = data, dst_start + (data - start)
        while off_in < hole:
            done = os.copy_file_range(src, dst, hole - off_in, off_in, off_out)
            if done == 0:
                raise FilesystemError("short copy while extracting the filesystem")
            off_in += done
            off_out += done
        pos = hole


def _repair_extracted(disk: Disk, part: Partition) -> None:
    """Journal replay for a non-root user: e2fsck on a sparse copy of the partition, then copy it back
    (e2fsck cannot re-open ``image?offset=`` after replaying a journal)."""
    with tempfile.TemporaryDirectory(prefix="atoll-ext-") as tmp:
        side = os.path.join(tmp, "part.img")
        src = os.open(disk.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            dst = os.open(side, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.ftruncate(dst, part.bytes)
                _copy_data(src, dst, part.offset, part.bytes, 0)
            finally:
                os.close(dst)
            _fsck(side, f"partition {part.number}")
            dst = os.open(side, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _copy_data(dst, src, 0, part.bytes, part.offset)
                os.fsync(src)
            finally:
                os.close(dst)
        finally:
            os.close(src)


def prepare(disk: Disk, part: Partition) -> dict[str, str]:
    """Make the filesystem safe to edit: replay a journal if needed, then a full e2fsck -fy."""
    sb = superblock(disk, part)
    if is_dirty(sb):
        LOG.info("partition %d: journal to replay or unclean state; repairing first", part.number)
        if os.geteuid() == 0:
            with loop.loop_device(disk.path, part.offset, part.bytes) as device:
                _fsck(device, f"partition {part.number}")
        elif not disk.is_block:
            _repair_extracted(disk, part)
        else:
            raise FilesystemError("the filesystem needs a journal replay, which on a block device needs root")
        sb = superblock(disk, part)
        if is_dirty(sb):
            raise FilesystemError(f"partition {part.number} is still not clean after e2fsck")
    _fsck(spec(disk, part), f"partition {part.number}")
    return superblock(disk, part)


def resize(disk: Disk, part: Partition, sb: dict[str, str]) -> tuple[int, int]:
    """Grow the filesystem to fill its partition; returns (bytes before, bytes after)."""
    before = fs_bytes(sb)
    block = int(sb["Block size"])
    target = part.bytes // block * block
    if target < before:
        raise FilesystemError(
            f"partition {part.number} ({part.bytes} bytes) is smaller than its filesystem ({before} bytes); "
            "refusing to shrink"
        )
    if target == before:
        return before, before
    size_before = os.stat(disk.path).st_size
    # NOTE: resize2fs ftruncate()s a regular file to offset-less fs size (e2fsprogs 1.47, resize2fs/main.c);
    # its guard is "fd > 0", so start it with stdin closed: it then opens the image as fd 0. Always pass
    # the size explicitly: without it resize2fs sizes the fs to the whole file.
    process.run(["resize2fs", spec(disk, part), f"{target // 1024}K"], close_stdin=True)
    if os.stat(disk.path).st_size != size_before:
        with contextlib.suppress(OSError):
            os.truncate(disk.path, size_before)
        raise FilesystemError("resize2fs changed the size of the disk image; the image is damaged")
    after = fs_bytes(superblock(disk, part))
    if after != target:
        raise FilesystemError(f"resize2fs left the filesystem at {after} bytes instead of {target}")
    return before, after


def check(disk: Disk, part: Partition) -> None:
    """Read-only full check after editing: any complaint is an error."""
    result = process.run(["e2fsck", "-f", "-n", spec(disk, part)], check=False)
    if result.exit_code != 0:
        detail = process.last_line(result.stdout) or process.last_line(result.stderr)
        raise FilesystemError(f"e2fsck -fn found problems after customization: {detail}")
