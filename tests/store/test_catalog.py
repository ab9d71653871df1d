"""Catalog schema versions and migrations; the embedded default store without any configuration."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from provider.catalog import SCHEMA_VERSION, Catalog, migrations
from provider.catalog import schema as t
from provider.catalog.db import use_wal
from provider.errors import CatalogError
from tests.helpers import need_root


def test_migrates_an_old_catalog_keeping_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    old = Catalog(url)
    with old.write() as conn:  # a version-1 catalog, as the first release wrote it
        for statement in migrations.MIGRATIONS[0]:
            conn.exec_driver_sql(statement)
        conn.execute(t.meta.insert().values(key="schema_version", value="1"))
        conn.execute(
            t.resources.insert().values(
                id="r1", size=1, mode="ro", backend="qcow2", locator="r1.raw", disk_format="raw",
                state="available", owner="root", created_at="x", updated_at="x",
            )
        )  # fmt: skip
    assert old.version() == 1
    assert Catalog(url).migrate() == SCHEMA_VERSION
    assert Catalog(url).version() == SCHEMA_VERSION
    assert Catalog(url).migrate() == SCHEMA_VERSION  # idempotent
    with Catalog(url).read() as conn:
        assert conn.execute(select(t.resources.c.locator)).scalar_one() == "r1.raw"


def test_refuses_a_catalog_newer_than_itself(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    cat = Catalog(url)
    cat.migrate()
    with cat.write() as conn:
        cat.set_meta(conn, "schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(CatalogError, match="newer than this Atoll"):
        Catalog(url).migrate()


@pytest.fixture
def nobody_home() -> Iterator[Path]:
    """A home directory the unprivileged user can reach (pytest's own tmp tree is root-only)."""
    need_root()
    home = Path(tempfile.mkdtemp(prefix="atoll-home-"))
    home.chmod(0o755)
    os.chown(home, 65534, 65534)
    yield home
    shutil.rmtree(home)


def test_embedded_default_needs_no_configuration(nobody_home: Path) -> None:
    """No config file at all: a non-root user gets a working store under ~/.local/share/atoll."""
    home = nobody_home
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2])}
    base = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "provider"]

    def atoll(*args: str) -> str:
        proc = subprocess.run([*base, *args], env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "ready" in atoll("init")
    vol = json.loads(atoll("-o", "json", "volume", "create", "v", "--size", "1M"))
    assert vol["kind"] == "volume"
    assert (home / ".local/share/atoll/catalog.sqlite").exists()


def _open_new_catalog(path: str, start: Any, errors: Any) -> None:
    """One of several processes opening the same new catalog at once (run in a forked child)."""
    start.wait()
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        use_wal(conn.cursor(), path)
        errors.put(conn.execute("PRAGMA journal_mode").fetchone()[0])
    except sqlite3.Error as e:
        errors.put(str(e))


def test_processes_opening_a_new_catalog_at_once_all_get_wal_mode(tmp_path: Path) -> None:
    """Two commands run at once on a new store: SQLite fails the reader of a header being switched to
    WAL at once ("database is locked", no busy wait); the switch is serialized, so every one opens."""
    forked = multiprocessing.get_context("fork")
    results: list[str] = []
    for attempt in range(100):
        path, start, out = str(tmp_path / f"c{attempt}.sqlite"), forked.Barrier(6), forked.Queue()
        children = [forked.Process(target=_open_new_catalog, args=(path, start, out)) for _ in range(6)]
        for child in children:
            child.start()
        results += [out.get(timeout=120) for _ in children]
        for child in children:
            child.join()
    assert results == ["wal"] * 600


def test_commands_on_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    env = {**os.environ, "ATOLL_CONFIG": str(tmp_path / "atoll.yaml")}
    (tmp_path / "atoll.yaml").write_text(f"store: {{backend: qcow2, path: {tmp_path / 'store'}}}\n")
    argv = [sys.executable, "-m", "provider", "-o", "json", "image", "jobs"]
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        assert json.loads(out) == []
    assert Catalog(f"sqlite:///{tmp_path / 'store' / 'catalog.sqlite'}").version() == SCHEMA_VERSION
