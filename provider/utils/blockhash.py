"""Pithos-style block hashing: sha256 of each 4 MiB block, computed as the bytes stream past."""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO

BLOCK_SIZE = 4 << 20
BLOCK_HASH = "sha256"
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


def block_count(size: int) -> int:
    return (size + BLOCK_SIZE - 1) // BLOCK_SIZE


def block_length(size: int, index: int) -> int:
    """Length of block ``index`` of an object of ``size`` bytes (the last one may be short)."""
    return min(BLOCK_SIZE, size - index * BLOCK_SIZE)


def top_hash(hashes: list[str]) -> str:
    """One digest for a whole hashmap: sha256 over the concatenated block digests."""
    digest = hashlib.sha256()
    for h in hashes:
        digest.update(bytes.fromhex(h))
    return digest.hexdigest()


def is_block_hash(text: object) -> bool:
    return isinstance(text, str) and bool(_HASH_RE.match(text))


class HashingReader:
    """Wraps a binary stream; every byte read is counted into an md5, and into the sha256 of the
    4 MiB block it belongs to. Reads pass through unchanged (no second pass over the data); the md5 and
    the block hashes of one chunk run in two helper threads while the caller writes it (hashlib
    releases the GIL), with at most one chunk in flight."""

    def __init__(self, stream: IO[bytes] | None = None, *, md5: bool = True) -> None:
        self._stream = stream
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self._block = hashlib.sha256()
        self._in_block = 0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []
        self.hashes: list[str] = []
        self.size = 0

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")  # not a plain file: readers must call read()

    def read(self, size: int = -1) -> bytes:
        if self._stream is None:
            raise io.UnsupportedOperation("read")
        data = self._stream.read(size)
        if data:
            self._wait()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="blockhash")
            self.size += len(data)
            self._pending = [self._pool.submit(self._blocks, data)]
            if self._md5 is not None:
                self._pending.append(self._pool.submit(self._md5.update, data))
        return data

    def _wait(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        self._wait()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def write(self, data: bytes) -> int:
        """Hash ``data`` as the next bytes (so the reader doubles as an export sink)."""
        self.update(data)
        return len(data)

    def update(self, data: bytes) -> None:
        if self._md5 is not None:
            self._md5.update(data)
        self.size += len(data)
        self._blocks(data)

    def _blocks(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), BLOCK_SIZE - self._in_block)
            self._block.update(view[:take])
            self._in_block += take
            view = view[take:]
            if self._in_block == BLOCK_SIZE:
                self._close_block()

    def _close_block(self) -> None:
        self.hashes.append(self._block.hexdigest())
        self._block = hashlib.sha256()
        self._in_block = 0

    def finish(self) -> list[str]:
        """The block hashes once the stream is exhausted (the short last block included)."""
        self.close()
        if self._in_block:
            self._close_block()
        return self.hashes

    @property
    def md5(self) -> str | None:
        self.close()
        return self._md5.hexdigest() if self._md5 is not None else None


def hash_file(path: str | os.PathLike[str], workers: int = 0) -> tuple[int, list[str]]:
    """``(size, block hashes)`` of a local file, hashing blocks in parallel threads (hashlib releases
    the GIL), each block read once with pread."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        count = block_count(size)
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
            hashes = list(pool.map(lambda i: _hash_block(fd, i), range(count)))
        return size, hashes
    finally:
        os.close(fd)


def _hash_block(fd: int, index: int) -> str:
    return hashlib.sha256(os.pread(fd, BLOCK_SIZE, index * BLOCK_SIZE)).hexdigest()


def read_blocks(fd: int, indexes: list[int]) -> Iterator[bytes]:
    """The blocks of the open file ``fd`` at ``indexes``, in order (what a sync sends)."""
    for i in indexes:
        yield os.pread(fd, BLOCK_SIZE, i * BLOCK_SIZE)
