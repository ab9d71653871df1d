"""The identity migration of an existing catalog: every owner becomes a project of the same name."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from provider.catalog import Catalog, migrations
from provider.catalog import schema as t


def test_existing_owners_become_projects(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    with catalog.write() as conn:
        for statement in migrations.MIGRATIONS[0] + migrations.MIGRATIONS[1]:
            conn.exec_driver_sql(statement)
        conn.execute(t.meta.insert().values(key="schema_version", value="2"))
        for rid, owner in (("r1", "alice"), ("r2", "alice"), ("r3", "root")):
            conn.exec_driver_sql(
                "INSERT INTO resources (id, size, mode, backend, locator, disk_format, state, owner, "
                f"created_at, updated_at) VALUES ('{rid}', 1, 'ro', 'qcow2', '{rid}', 'raw', 'available', "
                f"'{owner}', 'x', 'x')"
            )
        conn.exec_driver_sql(
            "INSERT INTO image_views VALUES ('r1', 'img', 'alice', 'shared', 'active', 'raw', 'bare', '{}', "
            "'x', 'x')"
        )
        conn.exec_driver_sql("INSERT INTO image_members VALUES ('r1', 'root')")
    assert catalog.migrate() == migrations.SCHEMA_VERSION
    with catalog.read() as conn:
        projects = conn.execute(select(t.projects.c.id, t.projects.c.name).order_by(t.projects.c.id)).all()
        member = conn.execute(select(t.image_members)).one()
    assert [tuple(p) for p in projects] == [("alice", "alice"), ("root", "root")]
    assert member.status == "accepted"
