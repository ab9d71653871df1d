"""The catalog through the bare DB-API driver (sqlite3, psycopg), for the ExtStorage fast paths.

A verb such as ``open`` or ``attach`` of an attached volume needs two indexed reads; SQLAlchemy alone
costs more to import than the whole answer. ``transaction`` gives those paths a cursor with the same
settings as ``provider.catalog.db`` (busy timeout, foreign keys, writers serialized) and never creates
or migrates anything: it yields None when the catalog is not there yet, is older than ``MIN_SCHEMA``,
or cannot be reached, and the caller then takes the full path, which does all of that.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

LOG = logging.getLogger(__name__)

MIN_SCHEMA = 2  # the attachments table exists from schema 2 on
WRITERS_LOCK = 7321  # provider.catalog.db takes the same advisory lock for every PostgreSQL write


class Unavailable(Exception):
    """The catalog refused a fast-path statement (busy, schema drift): take the full path."""


class Lite:
    """One open transaction: ``one``/``all`` read rows as tuples, ``execute`` writes; ``?`` placeholders."""

    def __init__(self, cursor: Any, pyformat: bool) -> None:
        self.cursor = cursor
        self.pyformat = pyformat

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        self.cursor.execute(sql.replace("?", "%s") if self.pyformat else sql, tuple(args))
        return int(self.cursor.rowcount)

    def one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self.execute(sql, args)
        row = self.cursor.fetchone()
        return tuple(row) if row is not None else None

    def all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.execute(sql, args)
        return [tuple(row) for row in self.cursor.fetchall()]

    def schema_version(self) -> int:
        row = self.one("SELECT value FROM atoll_meta WHERE key = 'schema_version'")
        return int(row[0]) if row else 0


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///…`` URL; None for in-memory or URLs with options (full path only)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url or len(url) == len(prefix):
        return None
    return url[len(prefix) :]


@contextmanager
def transaction(url: str, busy_timeout: float = 60.0, write: bool = False) -> Iterator[Lite | None]:
    """A transaction on the catalog at ``url``, committed when the block ends; None: take the full path.

    :raises Unavailable: when a statement in the block fails (the transaction is rolled back).
    """
    if url.startswith("sqlite"):
        with _sqlite(url, busy_timeout, write) as lite:
            yield lite
    elif url.startswith(("postgresql", "postgres:")):
        with _postgresql(url, busy_timeout, write) as lite:
            yield lite
    else:
        yield None


@contextmanager
def _sqlite(url: str, busy_timeout: float, write: bool) -> Iterator[Lite | None]:
    import sqlite3

    path = sqlite_path(url)
    if path is None:
        yield None
        return
    try:
        # mode=rw: a missing catalog is not created here (the full path creates and migrates it).
        conn = sqlite3.connect(
            f"file:{quote(path)}?mode=rw", uri=True, timeout=busy_timeout, isolation_level=None
        )
    except sqlite3.Error as e:
        LOG.debug("fast path: no catalog at %s (%s)", path, e)
        yield None
        return
    with _closing(conn, sqlite3.Error):
        cur = conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
        yield _checked(Lite(cur, pyformat=False), sqlite3.Error)


@contextmanager
def _postgresql(url: str, busy_timeout: float, write: bool) -> Iterator[Lite | None]:
    try:
        import psycopg
    except ImportError:
        yield None
        return
    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        conn = psycopg.connect(conninfo, connect_timeout=max(1, int(busy_timeout)))
    except psycopg.Error as e:
        LOG.debug("fast path: cannot reach the catalog (%s)", e)
        yield None
        return
    with _closing(conn, psycopg.Error):
        cur = conn.cursor()
        cur.execute(f"SET lock_timeout = {int(busy_timeout * 1000)}")
        if write:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITERS_LOCK,))
        yield _checked(Lite(cur, pyformat=True), psycopg.Error)


@contextmanager
def _closing(conn: Any, error: type[Exception]) -> Iterator[None]:
    """Commit when the block ends, roll back when it fails; a driver error becomes ``Unavailable``."""
    try:
        yield
        conn.commit()
    except error as e:
        conn.rollback()
        raise Unavailable(str(e)) from e
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


def _checked(lite: Lite, error: type[Exception]) -> Lite | None:
    """``lite`` when the catalog holds the tables the fast paths read, else None."""
    try:
        version = lite.schema_version()
    except error as e:  # no atoll_meta yet: a catalog that was never initialized
        LOG.debug("fast path: catalog not initialized (%s)", e)
        return None
    return lite if version >= MIN_SCHEMA else None
