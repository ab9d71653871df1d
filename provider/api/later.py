"""Work a request leaves for after its answer: one daemon thread per server worker process runs it in
order. Only work that may be lost belongs here (a worker that stops drops what is queued): today the
sha256 of an object or image uploaded through the API, which ``atoll fsck --scrub`` computes for any
resource that has none.
The thread runs at the lowest CPU priority (nice 19, for this thread and the threads and processes it
starts): it yields to requests in flight, so a client's next upload is not slowed by the last one's
digest. Long hashing goes to a child process (``file_digests``): a low-priority thread preempted while
it holds the GIL would hold up the requests of its process."""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from provider.errors import AtollError

LOG = logging.getLogger(__name__)
NICE = 19


class Later:
    """``run(fn, *args)`` queues ``fn(*args)`` and returns at once; the thread starts on first use
    (after gunicorn's fork, in the worker that needs it)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, fn: Callable[..., Any], *args: Any) -> None:
        self._queue.put((fn, args))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="atoll-later", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        try:  # Linux: a thread's own priority (threads it starts inherit it)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        except OSError as e:
            LOG.warning("work after the answer keeps the normal priority: %s", e)
        while True:
            fn, args = self._queue.get()
            try:
                fn(*args)
            except AtollError as e:
                LOG.warning("%s after the answer failed: %s", getattr(fn, "__name__", fn), e)
            except Exception:
                LOG.exception("%s after the answer failed", getattr(fn, "__name__", fn))
