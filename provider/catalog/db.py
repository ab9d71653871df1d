"""Catalog connection handling: engine set-up, write transactions that serialize, migrations."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, create_engine, event, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from provider.catalog import migrations, schema
from provider.errors import AtollError, CatalogError, StorageFull

LOG = logging.getLogger(__name__)
FULL_BELOW = 1 << 20  # a SQLite write error with less free space than this is a full disk
CATALOG_LOCK = 7321  # PostgreSQL advisory lock ids: the whole catalog, shared or exclusive
KEY_LOCKS = 2  # ... and the namespace of per-key locks (pg_advisory_xact_lock(2, hashtext(key)))


def _make_engine(url: str, busy_timeout: float) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout, "isolation_level": None})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            use_wal(cur, engine.url.database)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the lock up front: no deadlock when two readers both try to upgrade.
            mode = "IMMEDIATE" if conn.get_execution_options().get("atoll_write") else "DEFERRED"
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    engine = create_engine(postgresql_url(url), pool_pre_ping=True, pool_size=2, max_overflow=8)

    @event.listens_for(engine, "connect")
    def _on_pg_connect(dbapi_conn: Any, _record: Any) -> None:
        # The writers' advisory lock waits like SQLite's busy timeout, then fails with a clear error.
        cur = dbapi_conn.cursor()
        cur.execute(f"SET lock_timeout = {int(busy_timeout * 1000)}")
        cur.close()
        dbapi_conn.commit()

    return engine


def use_wal(cur: Any, database: str | None) -> None:
    """Put the catalog in WAL mode (readers never wait for the writer). A new catalog's switch is made
    under a lock on its directory: SQLite fails at once ("database is locked", no busy wait) a second
    process that reads the header while the first rewrites it, as when two commands open a new store."""
    if not database or database == ":memory:" or cur.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    fd = os.open(os.path.dirname(os.path.abspath(database)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        cur.execute("PRAGMA journal_mode=WAL")
    finally:
        os.close(fd)


def postgresql_url(url: str) -> str:
    """``postgresql://…`` (or ``postgres://``) always means psycopg 3, the driver the extra installs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Catalog:
    """Thin wrapper over an SQLAlchemy engine: ``read()`` and ``write()`` transactions, ``migrate()``."""

    def __init__(self, url: str, busy_timeout: float = 60.0) -> None:
        self.url = url
        try:
            self.engine = _make_engine(url, busy_timeout)
        except (SQLAlchemyError, ImportError) as e:
            raise CatalogError(reason=f"cannot open {url}: {e}") from e
        self.is_sqlite = url.startswith("sqlite")

    @contextmanager
    def _txn(self, write: bool, keys: tuple[str, ...] = ()) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(atoll_write=write)
                with conn.begin():
                    if write and not self.is_sqlite:
                        self._pg_write_locks(conn, keys)
                    yield conn
        except OperationalError as e:
            raise self._translate(e) from e

    def _translate(self, e: OperationalError) -> AtollError:
        """SQLite reports a full disk as 'database or disk is full', 'disk I/O error' or 'unable to open
        database file' (it cannot create its journal): any failure with the disk (nearly) full is that."""
        reason = str(e.orig) if e.orig else str(e)
        database = self.engine.url.database
        if self.is_sqlite and database:
            directory = os.path.dirname(os.path.abspath(database))
            try:
                st = os.statvfs(directory)
            except OSError:
                return CatalogError(reason=reason)
            if st.f_bavail * st.f_frsize < FULL_BELOW:
                return StorageFull(path=directory)
        return CatalogError(reason=reason)

    @contextmanager
    def held(self, key: str, deadline: float) -> Iterator[bool]:
        """Hold the cluster-wide lock ``key`` for the block (a PostgreSQL session advisory lock, which
        the server drops if this process dies); wait until ``deadline`` (time.monotonic()).
        Yields False when the lock is taken, True on SQLite, where the catalog never spans hosts."""
        if self.is_sqlite:
            yield True
            return
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # no transaction held open
                args = {"key": key}
                while not conn.execute(text("SELECT pg_try_advisory_lock(1, hashtext(:key))"), args).scalar():
                    if time.monotonic() > deadline:
                        yield False
                        return
                    time.sleep(0.05)
                try:
                    yield True
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(1, hashtext(:key))"), args)
        except OperationalError as e:
            raise CatalogError(reason=str(e.orig) if e.orig else str(e)) from e

    def _pg_write_locks(self, conn: Connection, keys: tuple[str, ...]) -> None:
        """PostgreSQL writers lock what they touch. A write that names its keys (``resource:<id>``,
        ``name:<kind>:<name>``) holds the catalog lock shared plus each key exclusively, so writes to
        different resources run in parallel; a write that names none holds the catalog lock exclusively
        (one writer at a time, as SQLite does)."""
        if not keys:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CATALOG_LOCK})
            return
        conn.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": CATALOG_LOCK})
        self.lock_keys(conn, *keys)

    def lock_keys(self, conn: Connection, *keys: str) -> None:
        """Lock ``keys`` until ``conn``'s transaction ends (PostgreSQL; SQLite has one writer anyway).
        Take keys in one call (they are sorted, so two writers never wait on each other in a cycle), or
        later only for resources further up the dependency graph (collection walks up, never down)."""
        if self.is_sqlite:
            return
        for key in sorted(set(keys)):
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:ns, hashtext(:key))"), {"ns": KEY_LOCKS, "key": key}
            )

    def read(self) -> Any:
        return self._txn(write=False)

    def write(self, *keys: str) -> Any:
        """A write transaction; ``keys`` name what it changes (see :meth:`_pg_write_locks`)."""
        return self._txn(write=True, keys=keys)

    def version(self) -> int:
        with self.read() as conn:
            if not self.engine.dialect.has_table(conn, "atoll_meta"):
                return 0
            row = conn.execute(
                select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
            ).first()
            return int(row[0]) if row else 0

    def migrate(self) -> int:
        """Bring the schema up to date (idempotent, safe under concurrency); return the version."""
        with self.write() as conn:
            current = 0
            if self.engine.dialect.has_table(conn, "atoll_meta"):
                row = conn.execute(
                    select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
                ).first()
                current = int(row[0]) if row else 0
            if current > migrations.SCHEMA_VERSION:
                raise CatalogError(
                    reason=f"catalog schema {current} is newer than this Atoll ({migrations.SCHEMA_VERSION})"
                )
            for version in range(current + 1, migrations.SCHEMA_VERSION + 1):
                LOG.info("migrating catalog to schema %d", version)
                for step in migrations.MIGRATIONS[version - 1]:
                    if callable(step):  # a data step (Python), between the DDL statements
                        step(conn)
                    else:
                        conn.exec_driver_sql(step)
                if version == 1:
                    conn.execute(schema.meta.insert().values(key="schema_version", value="1"))
                else:
                    conn.execute(
                        schema.meta.update()
                        .where(schema.meta.c.key == "schema_version")
                        .values(value=str(version))
                    )
            return migrations.SCHEMA_VERSION

    def analyze(self) -> None:
        """Gather the statistics the query planner chooses indexes by (SQLite has none until asked:
        without them a page of images sorts every row instead of walking the listing-order index)."""
        with self.write() as conn:
            conn.exec_driver_sql("ANALYZE")

    def get_meta(self, key: str) -> str | None:
        with self.read() as conn:
            row = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == key)).first()
            return row[0] if row else None

    def set_meta(self, conn: Connection, key: str, value: str) -> None:
        updated = conn.execute(schema.meta.update().where(schema.meta.c.key == key).values(value=value))
        if updated.rowcount == 0:
            conn.execute(schema.meta.insert().values(key=key, value=value))
