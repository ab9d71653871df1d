"""``atoll fsck --scrub``: re-read every read-only resource and compare it with its recorded sha256.

Read-only data never changes, so a digest that differs means the storage lost or changed bytes. The scrub
never repairs: it reports each mismatch with every resource built on the damaged one (clones, snapshots,
their descendants), so an operator knows what a restore must cover. A digest missing (a snapshot whose
digest was not computed yet) is computed and recorded. Progress is kept in the catalog after every
resource: a stopped scrub resumes where it was.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO, cast

from sqlalchemy import Connection, func, select, update

from provider.catalog import schema as t
from provider.errors import AtollError, BackendError
from provider.services.base import Service, res_key
from provider.utils.digest import file_digests
from provider.utils.faults import failpoint
from provider.utils.host import now

LOG = logging.getLogger(__name__)

CHECKPOINT = "scrub_checkpoint"
LAST = "scrub_last"


class _Hasher(io.RawIOBase):
    """A write-only sink that hashes what a backend exports and reports each write."""

    def __init__(self, advance: Callable[[int], None] | None) -> None:
        super().__init__()
        self.digest = hashlib.sha256()
        self.advance = advance

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.digest.update(view)
        if self.advance:
            self.advance(view.nbytes)
        return view.nbytes


@dataclass
class Mismatch:
    id: str
    name: str
    kind: str
    expected: str
    actual: str
    affected: list[str]


@dataclass
class ScrubReport:
    started_at: str
    checked: int = 0
    bytes: int = 0
    recorded: int = 0  # digests that were missing, now computed
    mismatches: list[Mismatch] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    after: str = ""  # the checkpoint: the last resource id scrubbed
    resumed: bool = False
    finished_at: str | None = None

    @property
    def clean(self) -> bool:
        return not self.mismatches and not self.unreadable

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}

    @classmethod
    def from_json(cls, text: str) -> ScrubReport:
        data = json.loads(text)
        data.pop("clean", None)
        data["mismatches"] = [Mismatch(**m) for m in data.get("mismatches", [])]
        return cls(**data)


class ScrubService(Service):
    def pending(self, restart: bool = False) -> tuple[ScrubReport, int, int]:
        """Where a scrub starts: the saved checkpoint (unless ``restart``), and the count and bytes of the
        read-only resources still to scrub."""
        saved = None if restart else self.catalog.get_meta(CHECKPOINT)
        report = ScrubReport.from_json(saved) if saved else ScrubReport(started_at=now())
        report.resumed = saved is not None
        with self.catalog.read() as conn:
            count, total = conn.execute(
                select(func.count(), func.coalesce(func.sum(t.resources.c.size), 0)).where(
                    *self._todo(report)
                )
            ).one()
        return report, int(count), int(total)

    def _todo(self, report: ScrubReport) -> list[Any]:
        r = t.resources.c
        return [r.mode == "ro", r.state.in_(("available", "deleted")), r.id > report.after]

    def run(self, restart: bool = False, advance: Callable[[int], None] | None = None) -> ScrubReport:
        """Scrub what is left (everything with ``restart``); the checkpoint is saved after each resource."""
        report, _, _ = self.pending(restart)
        with self.catalog.read() as conn:
            rows = conn.execute(
                select(t.resources).where(*self._todo(report)).order_by(t.resources.c.id)
            ).all()
        for row in rows:
            self._scrub_one(row, report, advance)
            report.after = row.id
            with self.catalog.write("scrub") as conn:
                self.catalog.set_meta(conn, CHECKPOINT, json.dumps(report.to_dict()))
            failpoint("scrub.after-resource")
        report.finished_at = now()
        with self.catalog.write("scrub") as conn:
            self.catalog.set_meta(conn, LAST, json.dumps(report.to_dict()))
            conn.execute(t.meta.delete().where(t.meta.c.key == CHECKPOINT))
        return report

    def _scrub_one(self, row: Any, report: ScrubReport, advance: Callable[[int], None] | None) -> None:
        try:
            actual = self.hash(row.backend, row.locator, row.disk_format, advance)
        except AtollError as e:
            report.unreadable.append({"id": row.id, "error": str(e)})
            return
        report.checked += 1
        report.bytes += row.size
        if row.sha256 is None:
            with self.catalog.write(res_key(row.id)) as conn:
                self._record(conn, row.id, actual)
            report.recorded += 1
        elif row.sha256 != actual:
            LOG.error("resource %s: sha256 %s, recorded %s", row.id, actual, row.sha256)
            with self.catalog.read() as conn:
                res = self.load(conn, row.id, states=("available", "deleted"))
                affected = self.affected(conn, row.id)
            report.mismatches.append(Mismatch(row.id, res.name, res.kind, row.sha256, actual, affected))

    def hash(
        self, backend: str, locator: str, disk_format: str, advance: Callable[[int], None] | None = None
    ) -> str:
        sink = _Hasher(advance)
        self.store.backend(backend).export_stream(locator, disk_format, cast(BinaryIO, sink))
        return sink.digest.hexdigest()

    def _record(self, conn: Connection, rid: str, digest: str) -> None:
        r = t.resources.c
        conn.execute(update(t.resources).where(r.id == rid, r.sha256.is_(None)).values(sha256=digest))

    def record_digest(self, rid: str) -> str | None:
        """Compute and record the sha256 of the read-only resource ``rid`` if it has none (a new snapshot;
        runs without any lock: the data is read-only); None when it is gone."""
        with self.catalog.read() as conn:
            row = conn.execute(select(t.resources).where(t.resources.c.id == rid)).first()
        if row is None or row.mode != "ro" or row.state != "available":
            return None
        if row.sha256:
            return str(row.sha256)
        raw = self.store.backend(row.backend).raw_file(row.locator, row.disk_format)
        try:  # a local raw file is hashed outside this process (see file_digests)
            digest = (
                file_digests(raw)["sha256"]
                if raw is not None
                else self.hash(row.backend, row.locator, row.disk_format)
            )
        except OSError as e:
            raise BackendError(reason=str(e)) from e
        with self.catalog.write(res_key(rid)) as conn:
            self._record(conn, rid, digest)
        return digest

    def affected(self, conn: Connection, rid: str) -> list[str]:
        """Names of every resource derived from ``rid`` (lineage or physical dependency), transitively."""
        seen: dict[str, str] = {}
        todo = [rid]
        while todo:
            cur = todo.pop()
            kids = {r for (r,) in conn.execute(select(t.resources.c.id).where(t.resources.c.parent == cur))}
            kids |= {
                r for (r,) in conn.execute(select(t.deps.c.resource_id).where(t.deps.c.requires_id == cur))
            }
            for kid in kids - seen.keys() - {rid}:
                res = self.load(conn, kid, states=("available", "deleted", "pending"))
                seen[kid] = f"{res.kind} {res.name}"
                todo.append(kid)
        return sorted(seen.values())
