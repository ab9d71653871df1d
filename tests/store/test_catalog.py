"""Catalog schema versions and migrations; the embedded default store without any configuration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from provider.catalog import SCHEMA_VERSION, Catalog
from provider.catalog import schema as t
from provider.errors import CatalogError
from tests.helpers import need_root


def test_migrates_an_old_catalog_keeping_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    old = Catalog(url)
    with old.write() as conn:  # a version-1 catalog, as the first release wrote it
        for statement in t.MIGRATIONS[0]:
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
