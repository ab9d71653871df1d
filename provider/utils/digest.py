"""A digest computed beside the caller's I/O: each chunk is hashed in a helper thread while the caller
writes it (hashlib releases the GIL on large buffers), with at most one chunk in flight."""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType


class BackgroundDigest:
    """``update()`` returns at once; ``hexdigest()`` waits for the last chunk. Use it as a context
    manager so the helper thread ends whatever happens. ``name`` None: a digest of nothing that
    costs nothing (``hexdigest()`` is None), for callers that hash only on request."""

    def __init__(self, name: str | None = "sha256") -> None:
        self._hash = hashlib.new(name) if name else None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"digest-{name}")
        self._pending: Future[None] | None = None

    def update(self, data: bytes) -> None:
        if self._hash is not None:
            self._wait()
            self._pending = self._pool.submit(self._hash.update, data)

    def hexdigest(self) -> str | None:
        self._wait()
        return self._hash.hexdigest() if self._hash is not None else None

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        """End the helper thread (after the chunk in flight)."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> BackgroundDigest:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
