"""A bounded pool of import workers for ``atoll serve``: at most ``imports.workers`` jobs at once.

Each server process runs one pool. It recovers jobs whose process died when it starts and every poll
after that, then claims queued server jobs (a claim is one conditional UPDATE, so two processes never
run the same job) and runs each as its owner. Its thread also refreshes the catalog's planner statistics
every ``STATS_EVERY`` seconds (SQLite gathers none by itself; the listings' plans depend on them).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy import select

from provider.catalog import schema as t
from provider.config import Config
from provider.services.base import Caller
from provider.services.imports_jobs import Job
from provider.services.imports_run import ImportRunner
from provider.services.store import Store

LOG = logging.getLogger(__name__)
STATS_EVERY = 600.0


class ImportWorkers:
    def __init__(self, config: Config, *, size: int | None = None, poll: float = 2.0) -> None:
        self.config = config
        self.size = size or config.imports.workers
        self.poll = poll
        self.store = Store.open(config, Caller("atoll-import-workers", admin=True))
        self._pool = ThreadPoolExecutor(self.size, thread_name_prefix="atoll-import")
        self._running: dict[str, Future[Job]] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="atoll-import-dispatch", daemon=True)
        self._analyzed = time.monotonic()  # atoll serve analyzed the catalog when it started

    def start(self) -> ImportWorkers:
        self._thread.start()
        return self

    def notify(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, wait: bool = True) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.store.imports.dead():  # a read; the write only when a job needs it
                    self.store.imports.recover()
                self._dispatch()
                if time.monotonic() - self._analyzed > STATS_EVERY:
                    self._analyzed = time.monotonic()
                    self.store.catalog.analyze()
            except Exception:  # the dispatcher must outlive a catalog hiccup; the next poll retries
                LOG.exception("import dispatcher")
            self._wake.wait(self.poll)
            self._wake.clear()

    def _dispatch(self) -> None:
        self._running = {k: f for k, f in self._running.items() if not f.done()}
        free = self.size - len(self._running)
        if free <= 0:
            return
        with self.store.catalog.read() as conn:
            rows = conn.execute(
                select(t.import_jobs)
                .where(t.import_jobs.c.state == "queued", t.import_jobs.c.runner == "server")
                .order_by(t.import_jobs.c.created_at)
                .limit(free)
            ).all()
        for job in (Job.from_row(r) for r in rows):
            runner = ImportRunner(Store.open(self.config, Caller(job.owner)))
            if runner.claim(job.id):
                LOG.info("worker takes import %s of %s", job.id, job.name)
                self._running[job.id] = self._pool.submit(runner.run, job)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no job is queued or running (tests, shutdown); False on timeout."""
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while not deadline.is_set():
                with self.store.catalog.read() as conn:
                    busy = conn.execute(
                        select(t.import_jobs.c.id).where(t.import_jobs.c.state.in_(("queued", "importing")))
                    ).first()
                if busy is None:
                    return True
                self.notify()
                deadline.wait(0.1)
            return False
        finally:
            timer.cancel()
