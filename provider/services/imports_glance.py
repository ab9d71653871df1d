"""Glance's interoperable image import on the queued images of the Image API.

``stage`` streams data into the staging area (status ``uploading``); ``start`` queues an import job for
the image (``glance-direct`` from the staged data, ``web-download`` from a URL; status ``importing``);
the job's worker then fills the queued image's resource with the converted raw data (status
``active``), or puts it back to ``queued`` with the reason in its task. ``tasks`` shows the jobs the way
Glance shows import tasks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select, update

from provider.catalog import schema as t
from provider.errors import Conflict, InvalidInput, PermissionDenied, TooLarge
from provider.imaging.inspect import FORMATS, STORED_AS_IS, Inspection
from provider.services.base import Service
from provider.services.image_records import QUEUED_OP, ImageRecord
from provider.services.imports_jobs import Job
from provider.utils.host import now

IMPORT_METHODS = ("glance-direct", "web-download")
ALIASES = {"vhd": "vpc"}  # Glance's name of a format -> QEMU's
CONVERTED = (*(f for f in FORMATS if f not in STORED_AS_IS), *ALIASES)  # uploads of these are imported
_TASK_STATUS = {"queued": "pending", "importing": "processing", "active": "success", "killed": "failure"}
CHUNK = 1 << 20


class GlanceImportService(Service):
    def _owned_queued(self, image_id: str, statuses: tuple[str, ...]) -> ImageRecord:
        rec = self.store.glance.show(image_id)
        if not (self.caller.admin or rec.owner == self.caller.name) or self.caller.read_only:
            raise PermissionDenied(reason=f"image {image_id} belongs to project {rec.owner}")
        if not rec.queued or rec.status not in statuses:
            raise Conflict(
                reason=f"image {image_id} is {rec.status}: only a {' or '.join(statuses)} image can"
            )
        return rec

    def stage(self, image_id: str, stream: IO[bytes], declared: int | None, limit: int) -> None:
        """Stream the body into the staging area; a failed or short upload leaves nothing staged."""
        self._owned_queued(image_id, ("queued", "uploading"))
        path = self.store.imports.staging_path(image_id)
        partial = path.with_name(path.name + ".part")
        try:
            size = _copy(stream, partial, limit)
            if declared is not None and size != declared:
                raise InvalidInput(
                    "the body held %(got)d bytes but Content-Length said %(want)d", got=size, want=declared
                )
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        self._set(image_id, status="uploading")

    def upload_converted(self, image_id: str, stream: IO[bytes], declared: int | None, limit: int) -> bool:
        """``PUT /v2/images/{id}/file`` of a format Atoll stores converted (qcow2, vmdk, vhdx, vpc, vdi):
        the data is staged and imported as ``glance-direct`` would (status ``importing``, then
        ``active`` as raw, or back to ``queued`` with the reason in its task). False, reading nothing,
        for the formats stored as they are (the caller uploads those)."""
        if self.store.glance.show(image_id).disk_format not in CONVERTED:
            return False
        self.stage(image_id, stream, declared, limit)
        self.start(image_id, {"method": {"name": "glance-direct"}})
        return True

    def start(self, image_id: str, body: Any) -> Job:
        """``POST /v2/images/{id}/import``: queue the import job of a queued (or staged) image."""
        method = body.get("method") if isinstance(body, dict) else None
        name = method.get("name") if isinstance(method, dict) else None
        if name not in IMPORT_METHODS:
            raise InvalidInput(
                "import method %(m)r is not one of %(all)s", m=name, all=", ".join(IMPORT_METHODS)
            )
        assert isinstance(method, dict)
        statuses = ("uploading",) if name == "glance-direct" else ("queued",)
        rec = self._owned_queued(image_id, statuses)
        disk_format = ALIASES.get(rec.disk_format, rec.disk_format)
        if disk_format not in FORMATS:
            raise InvalidInput(
                "disk format %(f)r cannot be imported (accepted: %(all)s)",
                f=rec.disk_format,
                all=", ".join((*FORMATS, *ALIASES)),
            )
        uri = method.get("uri") if name == "web-download" else ""
        if name == "web-download" and not isinstance(uri, str):
            raise InvalidInput("web-download needs the image's URL in method.uri")
        job = self.store.imports.submit(
            rec.name,
            uri or "",
            method=name,
            disk_format=disk_format,
            image_id=image_id,
            queued_image=True,
        )
        self._set(image_id, status="importing", glance={"os_glance_import_task": job.id})
        return job

    def tasks(self, image_id: str) -> list[dict[str, Any]]:
        """The image's import jobs as Glance tasks (``GET /v2/images/{id}/tasks``)."""
        self.store.glance.show(image_id)  # readable?
        self.store.imports.recover()
        with self.catalog.read() as conn:
            rows = conn.execute(
                select(t.import_jobs)
                .where(t.import_jobs.c.image_id == image_id)
                .order_by(t.import_jobs.c.created_at)
            ).all()
        return [_task(Job.from_row(r)) for r in rows]

    # ---- what the job's worker calls -------------------------------------------------------------------
    def fill(self, job: Job, found: Inspection, raw: Path | None, fd: int) -> str:
        """Store the converted data as the queued image's resource; the image becomes active."""
        with self.catalog.read() as conn:
            row = conn.execute(select(t.resources).where(t.resources.c.id == job.image_id)).first()
        if row is None or row.op != QUEUED_OP:
            raise Conflict(reason=f"image {job.image_id} is no longer waiting for its data")
        backend = self.store.backend(row.backend)
        if raw is None:
            with os.fdopen(os.dup(fd), "rb") as stream:
                stream.seek(0)
                result = backend.import_stream(row.locator, stream)
        else:
            result = backend.adopt(row.locator, raw)
        fmt = "iso" if found.format == "iso" else "raw"
        with self.catalog.write() as conn:
            self.mark_available(conn, job.image_id, size=result.size, sha256=result.sha256)
            self._update_view(conn, job.image_id, status="active", disk_format=fmt,
                              glance={"virtual_size": result.size})  # fmt: skip
        return job.image_id

    def failed(self, job: Job) -> None:
        """The import failed: the image waits for data again (the reason is in its task)."""
        with self.catalog.write() as conn:
            row = conn.execute(select(t.resources).where(t.resources.c.id == job.image_id)).first()
            if row is not None and row.op == QUEUED_OP:
                self._update_view(conn, job.image_id, status="queued")

    def record_digests(self, conn: Any, image_id: str, md5: str, sha512: str) -> None:
        """Glance's checksums of the stored data, once the worker has hashed it."""
        digests = {"checksum": md5, "os_hash_algo": "sha512", "os_hash_value": sha512}
        self._update_view(conn, image_id, glance=digests)

    # ---- plumbing --------------------------------------------------------------------------------------
    def _set(self, image_id: str, **values: Any) -> None:
        with self.catalog.write() as conn:
            self._update_view(conn, image_id, **values)

    def _update_view(
        self, conn: Any, image_id: str, glance: dict[str, Any] | None = None, **values: Any
    ) -> None:
        if glance:
            row = conn.execute(
                select(t.image_views.c.glance).where(t.image_views.c.resource_id == image_id)
            ).first()
            merged = {**json.loads(row.glance if row else "{}"), **glance}
            values["glance"] = json.dumps(merged, sort_keys=True)
        conn.execute(
            update(t.image_views)
            .where(t.image_views.c.resource_id == image_id)
            .values(updated_at=now(), **values)
        )


def _copy(stream: IO[bytes], path: Path, limit: int) -> int:
    size = 0
    with open(path, "wb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise TooLarge(what="the staged image", limit=limit)
            out.write(chunk)
    return size


def _task(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "type": "api_image_import",
        "status": _TASK_STATUS[job.state],
        "message": job.reason or "",
        "input": {"image_id": job.image_id, "import_req": {"method": {"name": job.method}}},
        "result": {"image_id": job.image_id} if job.state == "active" else None,
        "owner": job.owner,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "expires_at": None,
        "image_id": job.image_id,
        "request_id": None,
        "user_id": None,
        "progress": {"phase": job.phase, "done": job.done, "total": job.total, "percent": job.progress},
    }
