"""Image imports as jobs: submit, list, show, and recovery of jobs whose process died.

A job takes a local file, a staged upload (Glance ``glance-direct``) or a URL (``web-download``) through
the format inspector and ``qemu-img convert`` into a raw read-only resource with an image view. States:
``queued → importing → active``, or ``killed`` with the reason. Jobs live in the catalog, so a restart
resumes a server job (at most ``imports.max_attempts`` times) and fails a CLI job whose process died,
each with a reason: none stays ``importing`` with nobody running it.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, select, update

from provider.catalog import schema as t
from provider.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from provider.imaging.fetch import FetchPolicy, check_url
from provider.imaging.inspect import FORMATS
from provider.services.base import Service
from provider.services.imports_jobs import IMPORTS_CONTAINER, METHODS, Job, worker_alive
from provider.services.imports_run import ImportRunner, Listener
from provider.utils.host import new_id, now
from provider.utils.names import check_name

LOG = logging.getLogger(__name__)


class ImportService(Service):
    @property
    def policy(self) -> FetchPolicy:
        cfg = self.store.config.imports
        return FetchPolicy(
            allow_networks=cfg.allow_networks,
            schemes=cfg.allow_schemes,
            max_size=cfg.max_download_size,
            timeout=cfg.download_timeout,
            max_redirects=cfg.max_redirects,
        )

    def staging_path(self, image_id: str) -> Path:
        """Where ``glance-direct`` data of ``image_id`` is staged before its import (beside the data of
        a file store, so that a raw upload becomes the resource by a rename)."""
        return self.store.backend().scratch_dir() / f".staged-{image_id}"

    def submit(
        self,
        name: str,
        source: str,
        *,
        method: str,
        disk_format: str | None = None,
        runner: str = "server",
        image_id: str | None = None,
        options: dict[str, Any] | None = None,
        queued_image: bool = False,
    ) -> Job:
        """Check what can be checked now (name, format, source) and queue the import; with
        ``queued_image`` the job fills the Image API's queued image ``image_id`` instead of making one."""
        if not queued_image:  # a queued image's name was checked when it was created (it may be its id)
            check_name(name, "image name")
        if method not in METHODS:
            raise InvalidInput("import method %(m)r is not one of %(all)s", m=method, all=", ".join(METHODS))
        if disk_format is not None and disk_format not in FORMATS:
            raise InvalidInput(
                "disk format %(f)r is not one of %(all)s", f=disk_format, all=", ".join(FORMATS)
            )
        source = self._check_source(method, source, image_id)
        job_id, stamp = new_id(), now()
        with self.catalog.write() as conn:
            if not queued_image:
                self._check_names_free(conn, name)
            conn.execute(
                t.import_jobs.insert().values(
                    id=job_id,
                    image_id=image_id or new_id(),
                    name=name,
                    owner=self.caller.name,
                    method=method,
                    source=source,
                    disk_format=disk_format,
                    options=json.dumps({**(options or {}), "queued_image": queued_image}),
                    runner=runner,
                    state="queued",
                    done=0,
                    attempts=0,
                    created_at=stamp,
                    updated_at=stamp,
                )
            )
        LOG.info("queued import %s of %s (%s)", job_id, name, method)
        return self.show(job_id)

    def _check_source(self, method: str, source: str, image_id: str | None) -> str:
        if method == "web-download":
            check_url(source, self.policy)
            return source
        if method == "glance-direct":
            if image_id is None or not self.staging_path(image_id).is_file():
                raise InvalidInput("image %(id)s has no staged data: PUT it to /stage first", id=image_id)
            return str(self.staging_path(image_id))
        path = Path(source).absolute()
        if urlsplit(source).scheme not in ("", "file") or not path.is_file():
            raise InvalidInput("%(src)s is not a regular file (nor an http/https URL)", src=source)
        if not os.access(path, os.R_OK):
            raise InvalidInput("%(src)s is not readable", src=source)
        return str(path)

    def _check_names_free(self, conn: Connection, name: str) -> None:
        """The image name and its object in the imports container, both in the caller's project."""
        owner = self.caller.name
        self.store.images.check_name_free(conn, name, owner)
        busy = select(t.import_jobs.c.id).where(
            t.import_jobs.c.name == name,
            t.import_jobs.c.owner == owner,
            t.import_jobs.c.state.in_(("queued", "importing")),
        )
        if conn.execute(busy).first():
            raise AlreadyExists(what="import of image", name=name)
        self.store.objects.reserve_name(conn, IMPORTS_CONTAINER, name, owner)

    def run(self, job_id: str, listener: Listener | None = None) -> Job:
        """Run a queued job in this process, now (the CLI's foreground import); return how it ended."""
        runner = ImportRunner(self.store)
        runner.listener = listener
        if not runner.claim(job_id):
            raise Conflict(reason=f"import job {job_id} is not queued (another worker has it)")
        return runner.run(self.show(job_id))

    # ---- reading -------------------------------------------------------------------------------------
    def _visible(self, job: Job) -> bool:
        return self.caller.admin or job.owner == self.caller.name

    def show(self, ref: str) -> Job:
        """A job by its id, or the latest job of the image ``ref`` (an image id or name)."""
        with self.catalog.read() as conn:
            q = select(t.import_jobs).where(
                (t.import_jobs.c.id == ref)
                | (t.import_jobs.c.image_id == ref)
                | (t.import_jobs.c.name == ref)
            )
            rows = [Job.from_row(r) for r in conn.execute(q.order_by(t.import_jobs.c.created_at.desc()))]
        rows = [j for j in rows if self._visible(j)]
        if not rows:
            raise NotFound(what="import job", ref=ref)
        return next((j for j in rows if j.id == ref), rows[0])

    def status(self, ref: str) -> Job:
        """:meth:`show` after recovering dead jobs: what interfaces report (never a stale importing)."""
        self.recover()
        return self.show(ref)

    def list(self, *, include_done: bool = True) -> list[Job]:
        self.recover()
        with self.catalog.read() as conn:
            rows = conn.execute(select(t.import_jobs).order_by(t.import_jobs.c.created_at)).all()
        jobs = [Job.from_row(r) for r in rows]
        return [j for j in jobs if self._visible(j) and (include_done or j.state in ("queued", "importing"))]

    # ---- recovery ------------------------------------------------------------------------------------
    def _unregistered_data(self, conn: Connection, rid: str) -> builtins.list[tuple[str, str]]:
        """The data a dead CLI import stored but never registered goes, as with a failed registration
        (a server job registers the image it was queued for, and is resumed instead)."""
        row = conn.execute(select(t.resources.c.state).where(t.resources.c.id == rid)).first()
        registered = conn.execute(
            select(t.image_views.c.resource_id).where(t.image_views.c.resource_id == rid)
        )
        if row is None or row.state != "available" or registered.first() is not None:
            return []
        return self.hide(conn, rid)

    def recover(self) -> builtins.list[Job]:
        """Resume (queue again) server jobs whose worker died, fail CLI ones; return what changed."""
        changed: builtins.list[Job] = []
        with self.write_then_remove() as (conn, files):  # also drops the dead process's pending resource
            for job in self._dead(conn):
                changed.append(self._recover_one(conn, job, files))
        return changed

    def dead(self) -> builtins.list[Job]:
        """Jobs still marked importing whose process died (fsck reports them; ``recover`` ends them)."""
        with self.catalog.read() as conn:
            return self._dead(conn)

    def _dead(self, conn: Connection) -> builtins.list[Job]:
        rows = conn.execute(select(t.import_jobs).where(t.import_jobs.c.state == "importing")).all()
        jobs = (Job.from_row(r) for r in rows)
        return [j for j in jobs if j.worker is not None and not worker_alive(j.worker)]

    def _recover_one(self, conn: Connection, job: Job, files: builtins.list[tuple[str, str]]) -> Job:
        for path in job.scratch:
            Path(path).unlink(missing_ok=True)
        if job.image_id and job.runner == "cli":
            files += self._unregistered_data(conn, job.image_id)
        died = f"the process importing it (pid {job.worker and job.worker.get('pid')}) died"
        values: dict[str, Any] = {"worker": None, "scratch": None, "phase": None, "done": 0, "total": None}
        if job.runner == "server" and job.attempts < self.store.config.imports.max_attempts:
            values.update(state="queued", reason=f"resumed: {died}")
        else:
            why = "run the import again" if job.runner == "cli" else f"gave up after {job.attempts} attempts"
            values.update(state="killed", reason=f"{died}; {why}")
        LOG.warning("import %s of %s: %s", job.id, job.name, values["reason"])
        conn.execute(
            update(t.import_jobs).where(t.import_jobs.c.id == job.id).values(updated_at=now(), **values)
        )
        return job
