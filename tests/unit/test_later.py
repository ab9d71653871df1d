"""The per-worker queue of work left for after an answer: order, failures, and its low priority."""

from __future__ import annotations

import os
import threading

from provider.api.later import NICE, Later
from provider.errors import NotFound


def test_work_runs_in_order_at_the_lowest_priority_and_survives_failures() -> None:
    later = Later()
    seen: list[tuple[str, int]] = []
    done = threading.Event()

    def record(label: str) -> None:
        seen.append((label, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))

    def fail() -> None:
        raise NotFound(what="resource", ref="gone")

    def crash() -> None:
        raise RuntimeError("a bug in queued work")

    later.run(record, "first")
    later.run(fail)
    later.run(crash)
    later.run(record, "after the failures")
    later.run(done.set)
    assert done.wait(30)
    assert seen == [("first", NICE), ("after the failures", NICE)]
    # the caller's own thread keeps its priority
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < NICE
