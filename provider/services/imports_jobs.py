"""Import job records: what a job is, how it shows, and which process runs it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from provider.imaging.fetch import shown
from provider.utils.host import HOST, proc_start

IMPORTS_CONTAINER = "imports"
METHODS = ("local-file", "glance-direct", "web-download")


def this_worker() -> dict[str, Any]:
    """What identifies the running process across pid reuse (stored in ``import_jobs.worker``)."""
    # The start time is read now, not at import: under gunicorn the module is imported by the master
    # before the fork, and a worker must not carry its parent's identity (it would look dead).
    pid = os.getpid()
    return {"host": HOST, "pid": pid, "start": proc_start(pid)}


def worker_alive(worker: dict[str, Any]) -> bool:
    """Is the process that took a job still running? (Unknowable on another host: assumed so.)"""
    if worker.get("host") != HOST:
        return True
    start = proc_start(int(worker.get("pid", 0)))
    return start is not None and start == worker.get("start")


@dataclass(frozen=True)
class Job:
    id: str
    image_id: str
    name: str
    owner: str
    method: str
    source: str
    disk_format: str | None
    options: dict[str, Any]
    runner: str
    state: str
    reason: str | None
    phase: str | None
    done: int
    total: int | None
    attempts: int
    worker: dict[str, Any] | None
    scratch: list[str]
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: Any) -> Job:
        m = row._mapping
        return cls(
            **{k: m[k] for k in cls.__dataclass_fields__ if k not in ("options", "worker", "scratch")},
            options=json.loads(m["options"]),
            worker=json.loads(m["worker"]) if m["worker"] else None,
            scratch=json.loads(m["scratch"] or "[]"),
        )

    @property
    def progress(self) -> float | None:
        """Percent of the current phase done, when its size is known."""
        return round(100.0 * self.done / self.total, 1) if self.total else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "image_id": self.image_id,
            "name": self.name,
            "owner": self.owner,
            "method": self.method,
            "source": shown(self.source) if self.method == "web-download" else self.source,
            "disk_format": self.disk_format,
            "state": self.state,
            "reason": self.reason,
            "phase": self.phase,
            "progress": self.progress,
            "done": self.done,
            "total": self.total,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
