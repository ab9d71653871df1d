"""A reader that hashes what passes through it (md5 and sha512, Glance's checksum and os_hash_value)
in two helper threads, one digest each, and stops past a size limit."""

from __future__ import annotations

import io
from typing import IO, Any

from provider.errors import TooLarge
from provider.utils.digest import BackgroundDigest


class HashingReader:
    """``read(n)`` from ``stream``; each chunk goes to the md5 and the sha512 thread (hashlib releases
    the GIL on large buffers, so hashing overlaps the write into the backend)."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.count = 0
        self._md5 = BackgroundDigest("md5")
        self._sha512 = BackgroundDigest("sha512")

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        if data:
            self.count += len(data)
            if self.count > self.limit:
                raise TooLarge(what="the image", limit=self.limit)
            self._md5.update(data)
            self._sha512.update(data)
        return data

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a request body has no file descriptor")

    def finish(self) -> dict[str, Any]:
        digests = {
            "checksum": self._md5.hexdigest(),
            "os_hash_algo": "sha512",
            "os_hash_value": self._sha512.hexdigest(),
        }
        self.close()
        return digests

    def close(self) -> None:
        self._md5.close()
        self._sha512.close()
