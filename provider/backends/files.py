"""What the file-based backends (qcow2, reflink) share: the directory layout and raw-file import."""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import select
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from atoll_common.rollback import rollback
from provider.backends.base import Backend, ImportResult
from provider.errors import BackendError, BadConfiguration, StorageFull
from provider.utils.digest import BackgroundDigest
from provider.utils.writeback import WriteBehind

CHUNK = 4 << 20
BLOCK = 64 << 10
_ZERO = bytes(CHUNK)
_ZERO_BLOCK = bytes(BLOCK)


def data_runs(chunk: bytes) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each run of ``chunk`` that is not made of all-zero 64 KiB blocks."""
    if chunk == _ZERO[: len(chunk)]:
        return
    run_start = None
    for start in range(0, len(chunk), BLOCK):
        # startswith compares in place; comparing a memoryview slice is ~70x slower
        if chunk.startswith(_ZERO_BLOCK[: len(chunk) - start], start, start + BLOCK):
            if run_start is not None:
                yield run_start, start
                run_start = None
        elif run_start is None:
            run_start = start
    if run_start is not None:
        yield run_start, len(chunk)


def write_sparse(out: IO[bytes], chunk: bytes) -> None:
    """Write ``chunk`` at the current offset, seeking over all-zero 64 KiB blocks (holes stay holes)."""
    base = out.tell()
    view = memoryview(chunk)
    for start, end in data_runs(chunk):
        out.seek(base + start)
        out.write(view[start:end])
    out.seek(base + len(chunk))


def translate_oserror(e: OSError, path: Path) -> Exception:
    """Map errno to Atoll errors in one place (glance's errno table)."""
    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return StorageFull(path=str(path.parent))
    return BackendError(reason=f"{path}: {e.strerror or e}")


class FileBackend(Backend):
    """Backends that keep one file per backend object under ``<store>/data``."""

    adopts_in_place = True

    @property
    def data_dir(self) -> Path:
        return self.config.path / "data"

    def raw_file(self, locator: str, disk_format: str) -> Path | None:
        return self.path(locator) if disk_format == "raw" else None

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

    def give_back_space(self, locator: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.path(locator), 0)

    def allocated_bytes(self, locator: str) -> int:
        return self.path(locator).stat().st_blocks * 512

    def list_locators(self) -> Iterable[str]:
        if not self.data_dir.exists():
            return []
        return sorted(p.name for p in self.data_dir.iterdir() if not p.name.startswith("."))

    def import_stream(
        self,
        locator: str,
        stream: IO[bytes],
        progress: Callable[[int], None] | None = None,
        *,
        digest: bool = True,
    ) -> ImportResult:
        self._ensure_dir()
        path = self.path(locator)
        size = 0
        with BackgroundDigest("sha256" if digest else None) as sha256, rollback() as undo:
            undo.push(path.unlink, missing_ok=True)  # a partial object never stays
            try:
                with open(path, "xb") as out:
                    behind = WriteBehind(out.fileno())
                    for chunk in read_chunks(stream):
                        sha256.update(chunk)
                        write_sparse(out, chunk)
                        size += len(chunk)
                        behind.advance(size)
                        if progress:
                            progress(len(chunk))
                    out.truncate(size)
                    out.flush()
                    os.fsync(out.fileno())
                path.chmod(0o444)  # read-only resources never change
            except OSError as e:
                raise translate_oserror(e, path) from e
            hexdigest = sha256.hexdigest()
        _fsync_dir(self.data_dir)
        return ImportResult(size=size, sha256=hexdigest)

    def scratch_dir(self) -> Path:
        self._ensure_dir()
        return self.data_dir  # names starting with "." are never locators

    def adopt(self, locator: str, path: Path) -> ImportResult:
        """Rename ``path`` into place: the data is not read (its sha256 is filled in later)."""
        target = self.path(locator)
        try:
            path.chmod(0o444)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            os.link(path, target)  # fails if the locator exists, unlike rename
        except OSError as e:
            raise translate_oserror(e, target) from e
        finally:
            path.unlink(missing_ok=True)
        _fsync_dir(self.data_dir)
        return ImportResult(size=size, sha256=None)


def read_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    """Read ``stream`` in chunks; holes of a sparse regular file are produced without reading them."""
    fd: int | None = None
    try:
        fd = stream.fileno()
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        regular = False
    if fd is None or not regular:
        read = stream.read if fd is None else functools.partial(_read_pipe, stream, fd)
        while chunk := read(CHUNK):
            yield chunk
        return
    end = os.fstat(fd).st_size
    pos = os.lseek(fd, 0, os.SEEK_CUR)
    while pos < end:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole remains
            data = end
        while pos < data:  # a hole: zeros, without touching the file
            n = min(CHUNK, data - pos)
            yield _ZERO[:n]
            pos += n
        hole = os.lseek(fd, pos, os.SEEK_HOLE) if pos < end else end
        os.lseek(fd, pos, os.SEEK_SET)
        while pos < hole:
            chunk = os.read(fd, min(CHUNK, hole - pos))
            if not chunk:
                return
            yield chunk
            pos += len(chunk)


def _read_pipe(stream: IO[bytes], fd: int, size: int) -> bytes:
    """Up to ``size`` bytes of a pipe (fewer only at EOF), never blocking in read(2) for long.

    NOTE: CPython runs a signal's Python handler only between bytecodes; a SIGTERM that lands just
    before a blocking read would wait, unhandled, until the writer sends more (forever, for a stalled
    writer), so the upload would never roll back. Waiting in select() with a timeout closes that gap.
    """
    read1 = getattr(stream, "read1", stream.read)
    parts: list[bytes] = []
    got = 0
    while got < size:
        while not select.select([fd], [], [], 0.2)[0]:
            pass
        part = read1(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


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
