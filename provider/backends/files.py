"""What the file-based backends (qcow2, reflink) share: the directory layout and raw-file import."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from provider.backends.base import Backend, ImportResult
from provider.errors import BackendError, BadConfiguration, StorageFull

CHUNK = 4 << 20
BLOCK = 64 << 10
_ZERO = bytes(CHUNK)


def write_sparse(out: IO[bytes], chunk: bytes) -> None:
    """Write ``chunk`` at the current offset, seeking over all-zero 64 KiB blocks (holes stay holes)."""
    if chunk == _ZERO[: len(chunk)]:
        out.seek(len(chunk), os.SEEK_CUR)
        return
    view = memoryview(chunk)
    start = 0
    while start < len(chunk):
        block = view[start : start + BLOCK]
        if block == _ZERO[: len(block)]:
            out.seek(len(block), os.SEEK_CUR)
        else:
            out.write(block)
        start += BLOCK


def translate_oserror(e: OSError, path: Path) -> Exception:
    """Map errno to Atoll errors in one place (glance's errno table)."""
    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return StorageFull(path=str(path.parent))
    return BackendError(reason=f"{path}: {e.strerror or e}")


class FileBackend(Backend):
    """Backends that keep one file per backend object under ``<store>/data``."""

    @property
    def data_dir(self) -> Path:
        return self.config.path / "data"

    def path(self, locator: str) -> Path:
        if "/" in locator or locator.startswith("."):
            raise BackendError(reason=f"bad locator {locator!r}")
        return self.data_dir / locator

    def _ensure_dir(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BadConfiguration(reason=f"cannot create store directory {self.data_dir}: {e}") from e

    def exists(self, locator: str) -> bool:
        return self.path(locator).exists()

    def remove(self, locator: str) -> None:
        self.path(locator).unlink(missing_ok=True)

    def allocated_bytes(self, locator: str) -> int:
        return self.path(locator).stat().st_blocks * 512

    def list_locators(self) -> Iterable[str]:
        if not self.data_dir.exists():
            return []
        return sorted(p.name for p in self.data_dir.iterdir() if not p.name.startswith("."))

    def import_stream(
        self, locator: str, stream: IO[bytes], progress: Callable[[int], None] | None = None
    ) -> ImportResult:
        self._ensure_dir()
        path = self.path(locator)
        digest = hashlib.sha256()
        size = 0
        try:
            with open(path, "xb") as out:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                    write_sparse(out, chunk)
                    size += len(chunk)
                    if progress:
                        progress(len(chunk))
                out.truncate(size)
                out.flush()
                os.fsync(out.fileno())
            path.chmod(0o444)  # read-only resources never change
        except OSError as e:
            path.unlink(missing_ok=True)
            raise translate_oserror(e, path) from e
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        _fsync_dir(self.data_dir)
        return ImportResult(size=size, sha256=digest.hexdigest())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_raw(path: Path, out: IO[bytes]) -> None:
    with open(path, "rb") as src:
        while chunk := src.read(CHUNK):
            out.write(chunk)
