"""Running one import job: fetch or open the source, inspect it, convert it, store it, register it.

The source reaches ``qemu-img`` only after the inspector accepted it, as a file nobody else can change
in between: a staged upload or download (ours), or a local file owned by us (or root) and writable by
nobody else, read through the descriptor we inspected; any other local file is copied first.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import update

from provider.catalog import schema as t
from provider.errors import AtollError, Conflict
from provider.imaging.convert import Limits, check_info, convert, direct_io
from provider.imaging.fetch import fetch
from provider.imaging.inspect import Inspection, inspect
from provider.model import Resource
from provider.services.base import Service, res_key
from provider.services.imports_jobs import IMPORTS_CONTAINER, Job, this_worker
from provider.utils.digest import file_digests
from provider.utils.faults import failpoint
from provider.utils.host import now

LOG = logging.getLogger(__name__)

_PROGRESS_EVERY = 2.0  # seconds between progress writes to the catalog
_SCRATCH = ("download", "copy", "raw")
DIGESTS = ("sha256", "md5", "sha512")  # the resource's, then Glance's checksum and os_hash_value


class _Hasher(io.RawIOBase):
    """A write-only sink that hashes what it is given (to fill in a digest lazily)."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        super().__init__()
        self.digests = {name: hashlib.new(name) for name in DIGESTS}
        self.pool = pool

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)  # hashlib releases the GIL on large buffers: the three run in parallel
        for done in [self.pool.submit(d.update, chunk) for d in self.digests.values()]:
            done.result()
        return len(chunk)


Listener = Callable[[str | None, int, int | None], None]  # (phase, done, total) as the job advances


class ImportRunner(Service):
    """Runs jobs as the store's caller (the job's owner)."""

    _last_progress = 0.0
    listener: Listener | None = None

    def claim(self, job_id: str) -> bool:
        """Take a queued job for this process; False when another worker took it first."""
        with self.catalog.write() as conn:
            done = conn.execute(
                update(t.import_jobs)
                .where(t.import_jobs.c.id == job_id, t.import_jobs.c.state == "queued")
                .values(
                    state="importing",
                    worker=json.dumps(this_worker()),
                    scratch=json.dumps([str(self._scratch(job_id, k)) for k in _SCRATCH]),
                    attempts=t.import_jobs.c.attempts + 1,
                    updated_at=now(),
                )
            )
            return done.rowcount == 1

    def run(self, job: Job) -> Job:
        """Carry a claimed job to ``active`` or ``killed`` (with the reason); never leaves it importing."""
        try:
            res = self._run(job)
        except AtollError as e:
            self._finish(job, "killed", reason=str(e))
            self._queued_again(job)
        except BaseException as e:
            reason = (
                "interrupted" if isinstance(e, KeyboardInterrupt | SystemExit) else f"internal error: {e!r}"
            )
            self._finish(job, "killed", reason=reason)
            self._queued_again(job)
            if not isinstance(e, Exception):
                raise
            LOG.exception("import %s failed", job.id)
        else:
            self._finish(job, "active")
            self._fill_digest(job, res)
        return self.store.imports.show(job.id)

    def _run(self, job: Job) -> Resource:
        with self._source(job) as (source, fd, own):
            found = self._inspect(job, fd)
            raw = own  # our own staged copy is stored as is (a rename where the backend can)
            if found.needs_conversion:
                raw = self._scratch(job.id, "raw")
                self._convert(job, source, found, raw)
                failpoint("import.after-convert")
            return self._store(job, found, raw, fd)

    # ---- source --------------------------------------------------------------------------------------
    @contextmanager
    def _source(self, job: Job) -> Iterator[tuple[str, int, Path | None]]:
        """``(path qemu-img may open, descriptor the inspector reads, the file if it is ours)``."""
        own: Path | None = Path(job.source)
        if job.method == "web-download":
            own = self._scratch(job.id, "download")
            self._phase(job, "fetching")
            with open(own, "xb") as out:
                fetch(job.source, out, self.store.imports.policy, lambda d, n: self._progress(job, d, n))
        fd = os.open(job.source if own is None else own, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if job.method == "local-file":
                own = None
                if not _trusted(os.fstat(fd)):
                    os.close(fd)
                    own = self._copy_local(job, Path(job.source))
                    fd = os.open(own, os.O_RDONLY | os.O_CLOEXEC)
            yield f"/proc/{os.getpid()}/fd/{fd}", fd, own
        finally:
            os.close(fd)

    def _copy_local(self, job: Job, path: Path) -> Path:
        """Copy a file others could change between inspection and conversion."""
        copy = self._scratch(job.id, "copy")
        self._phase(job, "copying")
        with open(path, "rb") as src, open(copy, "xb") as dst:
            shutil.copyfileobj(src, dst, 4 << 20)
        return copy

    def _scratch(self, job_id: str, kind: str) -> Path:
        """A scratch file of the job (every one is listed in the job when it is claimed, so a restart
        removes it if this process dies)."""
        return self.store.backend().scratch_dir() / f".import-{job_id}.{kind}"

    # ---- inspect, convert ----------------------------------------------------------------------------
    def _inspect(self, job: Job, fd: int) -> Inspection:
        self._phase(job, "inspecting", record=False)  # a few header reads: not worth a catalog write

        def read(offset: int, length: int) -> bytes:
            return os.pread(fd, length, offset)

        limit = self.store.config.imports.max_virtual_size
        return inspect(read, os.fstat(fd).st_size, declared=job.disk_format, max_virtual_size=limit)

    def _convert(self, job: Job, source: str, found: Inspection, raw: Path) -> None:
        cfg = self.store.config.imports
        check_info(
            source, found.format, found.virtual_size, Limits(cfg.info_timeout, 1 << 30), self.store.run
        )
        self._phase(job, "converting", total=found.virtual_size)
        limits = Limits(cfg.convert_timeout, cfg.convert_memory)
        size = found.virtual_size
        direct = self.store.backend().adopts_in_place and direct_io(raw.parent)
        convert(
            source, found.format, raw, limits, direct=direct,
            progress=lambda p: self._progress(job, p * size / 100, size),
        )  # fmt: skip

    # ---- store and register --------------------------------------------------------------------------
    def _store(self, job: Job, found: Inspection, raw: Path | None, fd: int) -> Resource:
        self._phase(job, "storing")
        if job.options.get("queued_image"):
            return self.store.images.get(self.store.glance_imports.fill(job, found, raw, fd))
        backend = self.store.backend()
        rid, locator = job.image_id, backend.new_locator(job.image_id, "ro")
        with self.write_then_remove() as (conn, _):
            self.insert_pending(
                conn, rid=rid, size=0, mode="ro", backend=backend.name, locator=locator, disk_format="raw",
                parent=None, op="import", remove_on_abort=[locator],
            )  # fmt: skip
            conn.execute(
                t.object_views.insert().values(
                    resource_id=rid,
                    container=IMPORTS_CONTAINER,
                    name=job.name,
                    content_type="application/octet-stream",
                    meta=json.dumps({"import-job": job.id, "source-format": found.format}),
                    created_at=now(),
                )
            )
        try:
            if raw is None:
                with os.fdopen(os.dup(fd), "rb") as stream:
                    stream.seek(0)
                    result = backend.import_stream(locator, stream, lambda n: None)
            else:
                result = backend.adopt(locator, raw)
            with self.catalog.write(res_key(rid)) as conn:
                self.mark_available(conn, rid, size=result.size, sha256=result.sha256)
        except BaseException:
            self.abort_pending(rid)
            raise
        failpoint("import.after-store")
        return self._register(job, found, rid)

    def _register(self, job: Job, found: Inspection, rid: str) -> Resource:
        fmt = "iso" if found.format == "iso" else "raw"
        opts = job.options
        try:
            return self.store.images.register(
                rid,
                job.name,
                properties=opts.get("properties") or {},
                public=opts.get("visibility") == "public",
                disk_format=fmt,
            )
        except BaseException:
            self.store.objects.delete(rid)  # the data goes with the failed registration
            raise

    def _queued_again(self, job: Job) -> None:
        if job.options.get("queued_image"):
            self.store.glance_imports.failed(job)

    def _fill_digest(self, job: Job, res: Resource) -> None:
        """Hash the stored data (sha256 if the backend adopted the file without reading it; md5 and
        sha512 for Glance's ``checksum``/``os_hash_value``). The image is already usable meanwhile;
        the job's ``phase`` says ``digest``."""
        self._phase(job, "digest", total=res.size)
        try:
            digests = self._digests(res)
        except (OSError, AtollError) as e:
            LOG.warning("could not hash %s: %s", res.id, e)
        else:
            with self.catalog.write() as conn:
                if res.sha256 is None:
                    conn.execute(
                        update(t.resources).where(t.resources.c.id == res.id).values(sha256=digests["sha256"])
                    )
                self.store.glance_imports.record_digests(conn, res.id, digests["md5"], digests["sha512"])
        self._phase(job, None)

    def _digests(self, res: Resource) -> dict[str, str]:
        """A local raw file is hashed by a child process (the server's requests keep the GIL to
        themselves, see ``file_digests``); other backends' data streams through this one."""
        backend = self.store.backend(res.backend)
        raw = backend.raw_file(res.locator, "raw")
        if raw is not None:
            return file_digests(raw, DIGESTS)
        with ThreadPoolExecutor(3) as pool, io.BufferedWriter(sink := _Hasher(pool), 4 << 20) as out:
            backend.export_stream(res.locator, "raw", out)
        return {name: h.hexdigest() for name, h in sink.digests.items()}

    # ---- job rows ------------------------------------------------------------------------------------
    def _update(self, job: Job, **values: Any) -> None:
        with self.catalog.write() as conn:
            conn.execute(
                update(t.import_jobs).where(t.import_jobs.c.id == job.id).values(updated_at=now(), **values)
            )

    def _phase(self, job: Job, phase: str | None, total: int | None = None, record: bool = True) -> None:
        if record:
            self._update(job, phase=phase, done=0, total=total)
        self._last_progress = 0.0  # the phase's first progress is always written
        if self.listener:
            self.listener(phase, 0, total)

    def _progress(self, job: Job, done: float, total: float | None) -> None:
        """Record progress at most every two seconds (``done``/``total`` in bytes or percent)."""
        if self.listener:
            self.listener("", int(done), None if total is None else int(total))
        if time.monotonic() - self._last_progress < _PROGRESS_EVERY:
            return
        self._last_progress = time.monotonic()
        self._update(job, done=int(done), total=None if total is None else int(total))

    def _finish(self, job: Job, state: str, reason: str | None = None) -> None:
        current = self.store.imports.show(job.id)
        for path in current.scratch:
            Path(path).unlink(missing_ok=True)
        if job.method == "glance-direct":
            Path(job.source).unlink(missing_ok=True)
        self._update(job, state=state, reason=reason, phase=None, worker=None, scratch=None)
        LOG.info("import %s of %s: %s%s", job.id, job.name, state, f" ({reason})" if reason else "")


def _trusted(st: os.stat_result) -> bool:
    """A regular file only we (or root) can change: safe to inspect, then convert in place."""
    if not stat.S_ISREG(st.st_mode):
        raise Conflict(reason="the import source is not a regular file")
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & 0o022
