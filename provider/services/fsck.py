"""Consistency check and repair of catalog against backends (after crashes or kill -9)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row, delete, select

from provider.backends.reflink import PROBE_PREFIX
from provider.catalog import schema as t
from provider.errors import AtollError
from provider.model import Resource
from provider.services.base import Service, op_owner_alive
from provider.services.customize import CUSTOMIZE_OP
from provider.services.snapshot_recovery import frozen_top_taken
from provider.utils import procs
from provider.utils.host import HOST


@dataclass
class Finding:
    problem: str
    subject: str
    detail: str
    repaired: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "problem": self.problem,
            "subject": self.subject,
            "detail": self.detail,
            "repaired": self.repaired,
        }


@dataclass
class FsckReport:
    findings: list[Finding] = field(default_factory=list)
    checked: int = 0

    @property
    def clean(self) -> bool:
        return all(f.repaired for f in self.findings)


class FsckService(Service):
    def run(self, repair: bool = False) -> FsckReport:
        report = FsckReport()
        files: list[tuple[str, str]] = []
        half_customized: list[str] = []
        with self.catalog.write() as conn:
            rows = conn.execute(select(t.resources)).all()
            gone = self.store.hosts.forgotten(conn)
            report.checked = len(rows)
            referenced: set[tuple[str, str]] = set()
            for row in rows:
                referenced.add((row.backend, row.locator))
                if row.state == "pending":
                    res = self.load(conn, row.id, states=("pending",))
                    referenced.update((row.backend, loc) for loc in res.op_data.get("remove_on_abort", []))
                    if op_owner_alive(res) and res.op_data.get("host") not in gone:
                        report.findings.append(
                            Finding(
                                "in-progress", row.id, f"{row.op} by pid {row.op_pid} is still running", True
                            )
                        )
                        continue
                    report.findings.append(self._interrupted(conn, res, repair, files))
                    continue
                if row.op == CUSTOMIZE_OP and row.state == "available":
                    if self._customizing(conn, row, report):
                        half_customized.append(row.id)
                    continue
                if not self.store.backend(row.backend).exists(row.locator):
                    report.findings.append(
                        Finding("missing-data", row.id, f"{row.backend} object {row.locator} does not exist")
                    )
                if row.state == "deleted":
                    views = [
                        v.name
                        for v in (t.object_views, t.image_views, t.volume_views)
                        if conn.execute(select(v.c.resource_id).where(v.c.resource_id == row.id)).first()
                    ]
                    if views:
                        finding = Finding("deleted-with-views", row.id, f"hidden resource still has {views}")
                        if repair:
                            for v in (t.object_views, t.image_views, t.volume_views):
                                conn.execute(delete(v).where(v.c.resource_id == row.id))
                            finding.repaired = True
                        report.findings.append(finding)
                    if not self.dependents(conn, row.id):
                        finding = Finding("uncollected", row.id, "deleted and nothing requires it")
                        if repair:
                            files += self.collect(conn, row.id)
                            finding.repaired = True
                        report.findings.append(finding)
            files += self._orphans(conn, referenced, report, repair)
        self._remove_files(files)
        self._stale_attachments(report, repair)
        self._drop_half_customized(half_customized, report, repair)
        self._dead_imports(report, repair)
        if repair:
            shutil.rmtree(self.store.config.store.path / "tmp", ignore_errors=True)
            self._dead_probes()
        return report

    def _dead_probes(self) -> None:
        """Remove reflink probe directories whose process died (killed during ``atoll init``)."""
        data = self.store.config.store.path / "data"
        for probe in data.glob(f"{PROBE_PREFIX}*") if data.is_dir() else []:
            pid = probe.name.removeprefix(PROBE_PREFIX).split("-", 1)[0]
            if not pid.isdigit() or procs.start_time(int(pid)) is None:
                shutil.rmtree(probe, ignore_errors=True)

    def _interrupted(
        self, conn: Connection, res: Resource, repair: bool, files: list[tuple[str, str]]
    ) -> Finding:
        """A pending operation whose process died: undone, or completed when its volume already uses
        what it made (a qcow2 snapshot past its backend step)."""
        finding = Finding("interrupted", res.id, f"{res.op} interrupted (pid {res.op_pid} is gone)")
        taken = frozen_top_taken(self.store, conn, res)
        if taken is not None:
            finding.detail += ": the volume already writes to its new top, the snapshot is completed"
        if repair and taken is not None:
            self.store.volumes.finish_snapshot(conn, res.id, taken)
            finding.repaired = True
        elif repair:
            files += self._drop_pending(conn, res.id)
            finding.repaired = True
        return finding

    def _customizing(self, conn: Connection, row: Row[Any], report: FsckReport) -> bool:
        """A new volume whose first customization runs: in progress, or interrupted (True)."""
        res = self.load(conn, row.id)
        if op_owner_alive(res):
            detail = f"customization by pid {row.op_pid} is still running"
            report.findings.append(Finding("in-progress", row.id, detail, True))
            return False
        return True

    def _drop_half_customized(self, rids: list[str], report: FsckReport, repair: bool) -> None:
        """Remove the volumes whose first customization died half-way: as when a customization fails, no
        volume is left. Their only attachment is the customization's own (it refuses attached volumes),
        whose daemon outlives the killed process: it is detached first."""
        for rid in rids:
            detail = "customization of a new volume interrupted (its process is gone)"
            finding = Finding("interrupted", rid, detail)
            if repair:
                try:
                    self.store.datapath.detach(rid)
                    self.store.volumes.delete(rid)
                    finding.repaired = True
                except AtollError as e:
                    finding.detail += f" (not repaired: {e})"
            report.findings.append(finding)

    def _dead_imports(self, report: FsckReport, repair: bool) -> None:
        """Import jobs whose process died: scratch files removed, a CLI job's unregistered data dropped
        and the job killed (run the import again), a server job queued again (as its workers do)."""
        for job in self.store.imports.recover() if repair else self.store.imports.dead():
            detail = f"import {job.id} of {job.name}: the process importing it died"
            report.findings.append(Finding("interrupted", job.id, detail, repair))

    def _stale_attachments(self, report: FsckReport, repair: bool) -> None:
        for stale in self.store.hosts.stale_attachments():
            on = "" if stale.host == HOST else f" on {stale.host}"
            finding = Finding(
                "stale-attachment",
                stale.resource.id,
                f"{stale.resource.name} at {stale.where}{on}: {stale.reason}",
            )
            if repair:
                try:
                    self.store.hosts.release(stale)
                    finding.repaired = True
                except AtollError as e:
                    finding.detail += f" (not repaired: {e})"
            report.findings.append(finding)

    def _orphans(
        self, conn: object, referenced: set[tuple[str, str]], report: FsckReport, repair: bool
    ) -> list[tuple[str, str]]:
        names = {name for name, _ in referenced}
        names.add(self.store.backend().name)
        files = []
        for name in sorted(names):
            for locator in self.store.backend(name).list_locators():
                if (name, locator) in referenced:
                    continue
                finding = Finding("orphan", f"{name}:{locator}", "backend object no resource refers to")
                if repair:
                    files.append((name, locator))
                    finding.repaired = True
                report.findings.append(finding)
        return files


def report_json(report: FsckReport) -> str:
    return json.dumps(
        {"checked": report.checked, "clean": report.clean, "findings": [f.to_dict() for f in report.findings]}
    )
