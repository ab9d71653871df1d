"""Reading a read-only resource's bytes for the Object API: a byte range, streamed without copies.

The raw file itself where the backend has one, positioned at the range's start (gunicorn sends it
with sendfile(2) and stops at the Content-Length); otherwise the backend's export (qcow2 chains
flattened, RBD) through a pipe that a thread writes, cut to the range.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from typing import IO, TYPE_CHECKING, Any, cast

from provider.errors import CapabilityNotSupported
from provider.model import Resource

if TYPE_CHECKING:
    from provider.services.store import Store

CHUNK = 4 << 20


class Window(io.RawIOBase):
    """At most ``length`` bytes of a stream."""

    def __init__(self, inner: IO[bytes], length: int) -> None:
        self._inner = inner
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self._left)
        if n <= 0:
            return 0
        data = self._inner.read(n)
        buf[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


def open_range(store: Store, res: Resource, start: int, length: int) -> IO[bytes]:
    """A stream of ``length`` bytes of the read-only ``res`` from ``start`` (the caller checked access)."""
    backend = store.backend(res.backend)
    if res.disk_format == "raw":
        with contextlib.suppress(CapabilityNotSupported):
            raw = open(backend.path(res.locator), "rb", buffering=0)  # noqa: SIM115 - the server closes it
            raw.seek(start)
            return cast(IO[bytes], raw)
    rfd, wfd = os.pipe()
    reader = os.fdopen(rfd, "rb", CHUNK)

    def export() -> None:
        with os.fdopen(wfd, "wb", CHUNK) as out, contextlib.suppress(BrokenPipeError):  # client gone
            backend.export_stream(res.locator, res.disk_format, out)

    threading.Thread(target=export, name="export", daemon=True).start()
    while start > 0:  # a range of a flattened chain: skip what precedes it
        start -= len(reader.read(min(CHUNK, start))) or start
    return io.BufferedReader(Window(cast(IO[bytes], reader), length), CHUNK)
