"""A reader that hashes what passes through it (md5 and sha512, Glance's checksum and os_hash_value)
on a second thread, and stops past a size limit."""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from typing import IO, Any

from provider.errors import TooLarge


class HashingReader:
    """``read(n)`` from ``stream``; each chunk goes to a hashing thread (hashlib releases the GIL on
    large buffers, so hashing overlaps the write into the backend)."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.count = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha512 = hashlib.sha512()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._hash, name="upload-hash", daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._md5.update(chunk)
            self._sha512.update(chunk)

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        if data:
            self.count += len(data)
            if self.count > self.limit:
                self._queue.put(None)
                raise TooLarge(what="the image", limit=self.limit)
            self._queue.put(data)
        return data

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a request body has no file descriptor")

    def finish(self) -> dict[str, Any]:
        self._queue.put(None)
        self._thread.join()
        return {
            "checksum": self._md5.hexdigest(),
            "os_hash_algo": "sha512",
            "os_hash_value": self._sha512.hexdigest(),
        }

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
