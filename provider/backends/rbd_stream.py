"""Streaming in and out of RBD images: pipelined writes of what arrives, reads of allocated extents only."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from collections import deque
from collections.abc import Callable
from typing import IO, Any

from provider.backends.files import CHUNK, data_runs, read_chunks
from provider.datapath.ceph import bindings

GROW_STEP = 256 << 20  # an upload of unknown length grows its image by at least this much at a time
IN_FLIGHT = 8  # writes librbd carries at once (rbd import uses up to 10)
_ZEROS = bytes(CHUNK)


class _Writes:
    """Asynchronous writes to one image, at most IN_FLIGHT at a time; errors surface in order."""

    def __init__(self, image: Any) -> None:
        self.image = image
        self.pending: deque[Any] = deque()

    def submit(self, data: bytes, offset: int) -> None:
        if len(self.pending) >= IN_FLIGHT:
            self._finish(self.pending.popleft())
        self.pending.append(self.image.aio_write(data, offset, lambda _completion: None))

    def drain(self) -> None:
        while self.pending:
            self._finish(self.pending.popleft())

    def _finish(self, completion: Any) -> None:
        completion.wait_for_complete_and_cb()
        ret = completion.get_return_value()
        if ret < 0:
            raise _native_error(-ret)


def _native_error(code: int) -> Exception:
    """The exception a synchronous write would have raised (the ceph error table then maps it)."""
    _, rbd = bindings()
    cls = {
        errno.ENOSPC: rbd.NoSpace,
        errno.EDQUOT: rbd.DiskQuotaExceeded,
        errno.ENOENT: rbd.ImageNotFound,
        errno.EBUSY: rbd.ImageBusy,
    }.get(code, rbd.IOError)
    return cls(f"error writing to the image: {os.strerror(code)}", errno=code)


def write_stream(
    image: Any, stream: IO[bytes], progress: Callable[[int], None] | None, *, hashed: bool = True
) -> tuple[int, str | None]:
    """Copy ``stream`` into ``image``, growing it as data arrives; all-zero 64 KiB blocks are not
    written. Hashing a chunk overlaps with the writes of the previous ones. Returns (size, sha256);
    the sha256 is None when not ``hashed``."""
    digest = hashlib.sha256() if hashed else None
    writes = _Writes(image)
    size = capacity = 0
    try:
        for chunk in read_chunks(stream):
            end = size + len(chunk)
            if end > capacity:
                writes.drain()  # librbd refuses writes past the end: the resize must come first
                capacity = max(end, capacity + GROW_STEP, capacity * 2)
                image.resize(capacity)
            view = memoryview(chunk)
            for start, stop in data_runs(chunk):
                writes.submit(bytes(view[start:stop]), size + start)
            if digest is not None:
                digest.update(chunk)
            size = end
            if progress:
                progress(len(chunk))
    finally:
        writes.drain()
    image.resize(size)
    image.flush()
    return size, digest.hexdigest() if digest is not None else None


def export(image: Any, out: IO[bytes]) -> None:
    """Write the image's bytes to ``out``, reading allocated extents only; holes become zeros, or are
    skipped when ``out`` is a seekable file (it stays sparse, as with ``rbd export``)."""
    size = image.size()
    sparse = _seekable(out)
    base = out.tell() if sparse else 0
    for offset, length, has_data in layout(image, size):
        end = offset + length
        while offset < end:
            n = min(CHUNK, end - offset)
            if not has_data:
                if not sparse:
                    out.write(_ZEROS[:n])
            elif not sparse:
                out.write(image.read(offset, n))
            else:  # objects are allocated whole: their zero blocks stay holes in the file too
                data = image.read(offset, n)
                view = memoryview(data)
                for start, stop in data_runs(data):
                    out.seek(base + offset + start)
                    out.write(view[start:stop])
            offset += n
    if sparse:
        out.seek(base + size)
        out.truncate(base + size)


def _seekable(out: IO[bytes]) -> bool:
    try:
        return out.seekable() and os.path.isfile(f"/proc/self/fd/{out.fileno()}")
    except (OSError, ValueError, io.UnsupportedOperation, AttributeError):
        return False


def layout(image: Any, size: int, *, own: bool = False) -> list[tuple[int, int, bool]]:
    """``(offset, length, has_data)`` covering ``[0, size)``; with ``own`` only the image's own extents
    count (not what a clone reads from its parent), at byte rather than object granularity."""
    extents: list[tuple[int, int]] = []

    def seen(offset: int, length: int, exists: bool) -> int:
        if exists:
            extents.append((offset, length))
        return 0

    image.diff_iterate(0, size, None, seen, include_parent=not own, whole_object=not own)
    runs: list[tuple[int, int, bool]] = []
    pos = 0
    for offset, length in sorted(extents):
        if offset > pos:
            runs.append((pos, offset - pos, False))
        if offset + length > pos:
            begin = max(offset, pos)
            runs.append((begin, offset + length - begin, True))
            pos = offset + length
    if pos < size:
        runs.append((pos, size - pos, False))
    return runs
