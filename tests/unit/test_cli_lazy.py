"""The lazy ``atoll`` group: ``--help`` shows each command's own summary, every command still loads."""

from __future__ import annotations

import importlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from provider.catalog import lite
from provider.cli import cli
from provider.cli.lazy import COMMANDS


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_summary_in_the_table_is_the_command_s_own(name: str) -> None:
    group = click.Group()
    importlib.import_module(COMMANDS[name].module).install(group)
    command = group.commands[name]
    assert command.get_short_help_str(limit=1000) == COMMANDS[name].summary


def test_every_command_loads_on_use_and_help_lists_them_all() -> None:
    listed = cli.list_commands(click.Context(cli))
    assert listed == sorted({*COMMANDS, "init"})
    for name in listed:
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[0].startswith(f"Usage: cli {name} ")
    assert cli.get_command(click.Context(cli), "nope") is None
    result = CliRunner().invoke(cli, ["nope"])
    assert result.exit_code == 2 and "No such command 'nope'" in result.output


def test_lite_catalog_creates_nothing_and_skips_old_schemas(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    with lite.transaction(f"sqlite:///{path}") as db:
        assert db is None
    assert not path.exists()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE atoll_meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO atoll_meta VALUES ('schema_version', '1')")
    conn.commit()
    with lite.transaction(f"sqlite:///{path}") as db:
        assert db is None  # schema 1 has no attachments table: the full path migrates it
    conn.execute("UPDATE atoll_meta SET value = '2'")
    conn.commit()
    conn.close()
    with lite.transaction(f"sqlite:///{path}", write=True) as db:
        assert db is not None and db.schema_version() == 2
        db.execute("INSERT INTO atoll_meta VALUES (?, ?)", ("k", "v"))
    with pytest.raises(lite.Unavailable), lite.transaction(f"sqlite:///{path}", write=True) as db:
        assert db is not None
        db.execute("INSERT INTO atoll_meta VALUES (?, ?)", ("k2", "v2"))
        db.execute("SELECT * FROM no_such_table")  # rolls the insert above back
    with lite.transaction(f"sqlite:///{path}") as db:
        assert db is not None
        assert db.all("SELECT key FROM atoll_meta ORDER BY key") == [("k",), ("schema_version",)]
    for url in ("sqlite://", "sqlite:///x.db?timeout=3", "mysql://h/db"):
        with lite.transaction(url) as db:
            assert db is None


def test_a_listing_loads_neither_the_engine_nor_the_progress_bar_nor_the_postgresql_dialect(
    tmp_path: Path,
) -> None:
    """Every ``atoll`` start pays for what it imports: a command that only reads a SQLite catalog does
    not load the customization engine, tqdm or SQLAlchemy's PostgreSQL dialect (counted, not timed)."""
    config = tmp_path / "atoll.yaml"
    config.write_text(f"store:\n  path: {tmp_path / 'store'}\n")
    env = {**os.environ, "ATOLL_CONFIG": str(config), "PYTHONPROFILEIMPORTTIME": "1"}
    for args in (["init"], ["volume", "list"]):
        proc = subprocess.run(
            [sys.executable, "-m", "provider", *args], env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = {
        line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
    }
    assert "sqlalchemy" in loaded and "provider.services" in loaded  # the measurement sees the catalog
    unwanted = ("customization.engine", "tqdm", "sqlalchemy.dialects.postgresql")
    assert sorted(m for m in loaded if m.startswith(unwanted)) == []
