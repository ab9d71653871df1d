"""A digest computed beside the caller's I/O: each chunk is hashed in a helper thread while the caller
writes it (hashlib releases the GIL on large buffers). The hash may lag a few chunks behind the caller,
so that a moment when the caller or its source is descheduled does not leave the hash thread idle (the
same pipeline as :class:`provider.utils.blockhash.HashingReader`)."""

from __future__ import annotations

import collections
import hashlib
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

DEPTH = 4  # chunks the hash may lag behind the caller (it holds at most that many)


class BackgroundDigest:
    """``update()`` returns at once; ``hexdigest()`` waits for the last chunk. Use it as a context
    manager so the helper thread ends whatever happens. ``name`` None: a digest of nothing that
    costs nothing (``hexdigest()`` is None), for callers that hash only on request."""

    def __init__(self, name: str | None = "sha256") -> None:
        self._hash = hashlib.new(name) if name else None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"digest-{name}")
        self._pending: collections.deque[Future[None]] = collections.deque()

    def update(self, data: bytes) -> None:
        if self._hash is not None:
            while len(self._pending) >= DEPTH:
                self._pending.popleft().result()
            self._pending.append(self._pool.submit(self._hash.update, data))

    def hexdigest(self) -> str | None:
        self._wait()
        return self._hash.hexdigest() if self._hash is not None else None

    def _wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """End the helper thread (after the chunks in flight)."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> BackgroundDigest:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_CHILD = """
import hashlib, sys
from concurrent.futures import ThreadPoolExecutor
names = sys.argv[2].split(",")
hashes = [hashlib.new(n) for n in names]
pools = [ThreadPoolExecutor(1) for _ in names]
pending = []
with open(sys.argv[1], "rb", buffering=0) as f:
    while chunk := f.read(4 << 20):
        if len(pending) >= 4 * len(names):
            for done in pending[: len(names)]:
                done.result()
            del pending[: len(names)]
        pending += [pool.submit(h.update, chunk) for pool, h in zip(pools, hashes)]
for done in pending:
    done.result()
for n, h in zip(names, hashes):
    print(n, h.hexdigest())
"""


def file_digests(path: Path, names: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """Digests of a local file (one thread per digest), computed by a child interpreter.

    For work a server does beside its requests: a hashing thread inside a server process shares the
    GIL with the request threads, and at low priority it is preempted while it holds the lock, so
    requests wait behind it (a 1,000-image listing's median went from 27 to 57 ms while a 10 GiB
    upload's digest ran, measured). A child process has its own interpreter; on Linux it inherits the
    calling thread's priority, so it really runs in the background.
    """
    done = subprocess.run(
        [sys.executable, "-I", "-c", _CHILD, str(path), ",".join(names)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    if done.returncode != 0 or sorted(found) != sorted(names):
        raise OSError(f"hashing {path} failed: {done.stderr.strip()[-500:] or done.returncode}")
    return found
