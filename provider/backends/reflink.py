"""reflink backend: raw files cloned with FICLONE on XFS (reflink=1) or btrfs; no dependency chains."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO

from provider.backends.base import Capability, CloneResult, SnapshotLayout, SnapshotResult
from provider.backends.files import FileBackend, copy_raw, translate_oserror
from provider.errors import BackendError, BadConfiguration

FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h


def ficlone(src: Path, dst: Path, *, mode: int) -> None:
    """Create ``dst`` sharing every extent of ``src`` (no data copied)."""
    with open(src, "rb") as s:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            fcntl.ioctl(fd, FICLONE, s.fileno())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            dst.unlink(missing_ok=True)
            raise
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

    def grow(self, locator: str, size: int) -> None:
        path = self.path(locator)
        try:
            os.truncate(path, size)
        except OSError as e:
            raise translate_oserror(e, path) from e

    def export_stream(self, locator: str, disk_format: str, out: IO[bytes]) -> None:
        copy_raw(self.path(locator), out)
