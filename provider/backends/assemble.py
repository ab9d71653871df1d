"""Build a new read-only backend object out of byte ranges of existing ones.

File backends share extents with ``FICLONERANGE`` where the filesystem can (XFS reflink=1, btrfs) and
copy in the kernel with ``copy_file_range`` elsewhere; other backends copy through a stream.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, cast

from provider.backends.base import Backend, Capability
from provider.backends.files import FileBackend, translate_oserror
from provider.errors import BackendError

FICLONERANGE = 0x4020940D  # _IOW(0x94, 13, struct file_clone_range), linux/fs.h
_CLONE_RANGE = struct.Struct("=qQQQ")  # src_fd, src_offset, src_length, dest_offset
_NO_CLONE = (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EBADF)


@dataclass(frozen=True)
class Piece:
    """``length`` bytes at ``offset`` of the read-only backend object ``locator``."""

    locator: str
    offset: int
    length: int


@dataclass(frozen=True)
class AssembleResult:
    size: int
    cloned: int  # bytes that share extents with their source (no data written)
    copied: int  # bytes written


def coalesce(pieces: Iterable[Piece]) -> list[Piece]:
    """Merge pieces that continue each other in the same source (one syscall per run)."""
    out: list[Piece] = []
    for p in pieces:
        if out and out[-1].locator == p.locator and out[-1].offset + out[-1].length == p.offset:
            last = out.pop()
            p = Piece(p.locator, last.offset, last.length + p.length)
        out.append(p)
    return out


def assemble(backend: Backend, locator: str, pieces: list[Piece]) -> AssembleResult:
    """Create ``locator`` (read-only, raw) as the concatenation of ``pieces``; nothing is left behind on
    failure."""
    if isinstance(backend, FileBackend):
        return _assemble_file(backend, locator, coalesce(pieces))
    return _assemble_stream(backend, locator, coalesce(pieces))


def _assemble_file(backend: FileBackend, locator: str, pieces: list[Piece]) -> AssembleResult:
    backend.data_dir.mkdir(parents=True, exist_ok=True)
    dest = backend.path(locator)
    reflink = bool(backend.capabilities & Capability.REFLINK)
    cloned = copied = pos = 0
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            for piece in pieces:
                with open(backend.path(piece.locator), "rb") as src:
                    if reflink and _clone_range(src.fileno(), piece, fd, pos):
                        cloned += piece.length
                    else:
                        _copy_range(src.fileno(), piece, fd, pos)
                        copied += piece.length
                pos += piece.length
            os.ftruncate(fd, pos)
            os.fsync(fd)
        finally:
            os.close(fd)
        dest.chmod(0o444)
    except OSError as e:
        dest.unlink(missing_ok=True)
        raise translate_oserror(e, dest) from e
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return AssembleResult(size=pos, cloned=cloned, copied=copied)


def _clone_range(src: int, piece: Piece, dest: int, pos: int) -> bool:
    """Share the piece's extents at ``pos`` of ``dest``; False when the filesystem cannot (the piece
    must then be copied). Offsets of 4 MiB blocks are aligned; a short last block ends at the source's
    end of file, which FICLONERANGE accepts."""
    try:
        fcntl.ioctl(dest, FICLONERANGE, _CLONE_RANGE.pack(src, piece.offset, piece.length, pos))
        return True
    except OSError as e:
        if e.errno in _NO_CLONE:
            return False
        raise


def _copy_range(src: int, piece: Piece, dest: int, pos: int) -> None:
    done = 0
    while done < piece.length:
        n = os.copy_file_range(src, dest, piece.length - done, piece.offset + done, pos + done)
        if n == 0:
            raise BackendError(reason=f"{piece.locator} ends before byte {piece.offset + piece.length}")
        done += n


def _assemble_stream(backend: Backend, locator: str, pieces: list[Piece]) -> AssembleResult:
    stream = _PieceReader(backend, pieces)
    result = backend.import_stream(locator, cast(IO[bytes], stream))
    return AssembleResult(size=result.size, cloned=0, copied=result.size)


class _PieceReader:
    """A read()-able stream over the pieces, one 4 MiB read at a time (for backends without files)."""

    STEP = 4 << 20

    def __init__(self, backend: Backend, pieces: list[Piece]) -> None:
        self._chunks = self._iter(backend, pieces)
        self._buf = b""

    @classmethod
    def _iter(cls, backend: Backend, pieces: list[Piece]) -> Iterator[bytes]:
        for p in pieces:
            for off in range(0, p.length, cls.STEP):
                n = min(cls.STEP, p.length - off)
                data = backend.read(p.locator, p.offset + off, n)
                if len(data) != n:
                    raise BackendError(reason=f"{p.locator} ends before byte {p.offset + off + n}")
                yield data

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            nxt = next(self._chunks, None)
            if nxt is None:
                break
            self._buf += nxt
        if size < 0:
            size = len(self._buf)
        out, self._buf = self._buf[:size], self._buf[size:]
        return out
