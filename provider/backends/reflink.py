"""reflink backend: raw files cloned with FICLONE on XFS (reflink=1) or btrfs; no dependency chains."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import tempfile
from pathlib import Path
from typing import IO

from atoll_common.rollback import rollback
from provider.backends.base import Capability, CloneResult, SnapshotLayout, SnapshotResult
from provider.backends.files import FileBackend, copy_raw, translate_oserror
from provider.datapath.base import Attacher, FileAttacher
from provider.errors import BackendError, BadConfiguration

FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
FS_IOC_FIEMAP = 0xC020660B  # _IOWR('f', 11, struct fiemap), linux/fs.h
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_SHARED = 0x2000
_FIEMAP_HEAD = struct.Struct("=QQIIII")  # start, length, flags, mapped, count, reserved
_FIEMAP_EXTENT = struct.Struct("=QQQQQIIII")  # logical, physical, length, 2 reserved, flags, 3 reserved
_BATCH = 256


def exclusive_bytes(path: Path) -> int:
    """Bytes of ``path``'s extents that no other file shares (FIEMAP without FIEMAP_EXTENT_SHARED)."""
    total = 0
    start = 0
    with open(path, "rb") as f:
        while True:
            buf = bytearray(_FIEMAP_HEAD.pack(start, (1 << 64) - 1 - start, 0, 0, _BATCH, 0))
            buf += bytes(_FIEMAP_EXTENT.size * _BATCH)
            fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, buf)
            mapped = _FIEMAP_HEAD.unpack_from(buf)[3]
            if mapped == 0:
                return total
            for i in range(mapped):
                ext = _FIEMAP_EXTENT.unpack_from(buf, _FIEMAP_HEAD.size + i * _FIEMAP_EXTENT.size)
                logical, length, flags = ext[0], ext[2], ext[5]
                if not flags & FIEMAP_EXTENT_SHARED:
                    total += length
                if flags & FIEMAP_EXTENT_LAST:
                    return total
                start = logical + length


def ficlone(src: Path, dst: Path, *, mode: int) -> None:
    """Create ``dst`` sharing every extent of ``src`` (no data copied)."""
    with open(src, "rb") as s:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with rollback() as undo:
            undo.push(dst.unlink, missing_ok=True)
            try:
                fcntl.ioctl(fd, FICLONE, s.fileno())
                os.fsync(fd)
            finally:
                os.close(fd)


def supports_reflink(directory: Path) -> bool:
    """True when files in ``directory`` can be cloned with FICLONE."""
    try:
        with tempfile.TemporaryDirectory(dir=directory, prefix=".reflink-probe-") as tmp:
            src = Path(tmp) / "a"
            src.write_bytes(b"\0" * 4096)
            ficlone(src, Path(tmp) / "b", mode=0o600)
        return True
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EBADF):
            return False
        raise


class ReflinkBackend(FileBackend):
    name = "reflink"
    capabilities = (
        Capability.CLONE | Capability.SNAPSHOT | Capability.GROW | Capability.THIN | Capability.REFLINK
    )

    def attacher_class(self, disk_format: str) -> type[Attacher]:
        return FileAttacher

    def check(self) -> None:
        self._ensure_dir()
        if not supports_reflink(self.data_dir):
            raise BadConfiguration(
                reason=f"{self.data_dir} does not support reflinks: put the store on XFS (mkfs.xfs -m "
                "reflink=1) or btrfs, or use backend qcow2"
            )

    def new_locator(self, resource_id: str, mode: str) -> str:
        return f"{resource_id}.raw"

    def create_empty(self, locator: str, size: int) -> str:
        self._ensure_dir()
        path = self.path(locator)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise translate_oserror(e, path) from e
        return "raw"

    def clone(self, source: str, source_format: str, locator: str, size: int) -> CloneResult:
        if source_format != "raw":
            raise BackendError(reason=f"reflink store holds raw disks only, {source} is {source_format}")
        dst = self.path(locator)
        try:
            ficlone(self.path(source), dst, mode=0o600)
            if size > dst.stat().st_size:
                os.truncate(dst, size)
        except OSError as e:
            dst.unlink(missing_ok=True)
            raise translate_oserror(e, dst) from e
        return CloneResult(depends_on_source=False)

    def snapshot(self, volume: str, new_locator: str) -> SnapshotResult:
        dst = self.path(new_locator)
        try:
            ficlone(self.path(volume), dst, mode=0o444)
        except OSError as e:
            raise translate_oserror(e, dst) from e
        return SnapshotResult(
            snapshot_locator=new_locator,
            volume_locator=volume,
            snapshot_format="raw",
            layout=SnapshotLayout.INDEPENDENT,
        )

    def allocated_bytes(self, locator: str) -> int:
        return exclusive_bytes(self.path(locator))

    def grow(self, locator: str, size: int) -> None:
        path = self.path(locator)
        try:
            os.truncate(path, size)
        except OSError as e:
            raise translate_oserror(e, path) from e

    def export_stream(self, locator: str, disk_format: str, out: IO[bytes]) -> None:
        copy_raw(self.path(locator), out)
