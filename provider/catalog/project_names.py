"""Migration data step: names unique per project instead of store-wide.

Image, volume and object names were unique across the whole store, so one project's ``debian`` image
blocked every other project's and a 409 told a tenant what another one had named. Image names become
unique per owner (a unique index on ``(owner, name)``); volume and object names are checked per
project by the services (under their name locks) and keep plain lookup indexes.

PostgreSQL drops the unique constraints in place. SQLite cannot, so each table is rebuilt from its own
``CREATE`` text without the constraint; ``image_views`` has children (members, tags) that its drop
would cascade away, so they are kept aside and put back.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

# (table, the constraint's text in SQLite's CREATE TABLE, what replaces it, child tables kept aside)
_SQLITE = (
    ("image_views", "name TEXT NOT NULL UNIQUE", "name TEXT NOT NULL", ("image_members", "image_tags")),
    ("volume_views", "name TEXT NOT NULL UNIQUE", "name TEXT NOT NULL", ()),
    ("object_views", ", UNIQUE (container, name)", "", ()),
)
_INDEXES = (
    "CREATE INDEX image_views_owner ON image_views (owner)",
    "CREATE INDEX image_views_visibility ON image_views (visibility)",
    "CREATE INDEX image_views_created ON image_views (created_at, resource_id)",
)
AFTER = [
    "CREATE UNIQUE INDEX image_views_owner_name ON image_views (owner, name)",
    "CREATE INDEX image_views_name ON image_views (name)",
    "CREATE INDEX volume_views_name ON volume_views (name)",
    "CREATE INDEX object_views_path ON object_views (container, name)",
]
_UNIQUE_CONSTRAINTS = text(
    "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) AND contype = 'u'"
)


def per_project_names(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        _postgresql(conn)
    else:
        _sqlite(conn)


def _postgresql(conn: Connection) -> None:
    for table in ("image_views", "volume_views", "object_views"):
        found = conn.execute(_UNIQUE_CONSTRAINTS, {"t": table})
        for (name,) in found.all():
            conn.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')


def _sqlite(conn: Connection) -> None:
    for table, constraint, replacement, children in _SQLITE:
        create = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).scalar_one()
        if constraint not in create:
            raise RuntimeError(f"catalog table {table} does not have the expected constraint {constraint!r}")
        conn.exec_driver_sql(create.replace(constraint, replacement).replace(table, f"{table}__new", 1))
        conn.exec_driver_sql(f"INSERT INTO {table}__new SELECT * FROM {table}")
        for child in children:
            conn.exec_driver_sql(f"CREATE TEMP TABLE {child}__kept AS SELECT * FROM {child}")
        conn.exec_driver_sql(f"DROP TABLE {table}")
        conn.exec_driver_sql(f"ALTER TABLE {table}__new RENAME TO {table}")
        for child in children:
            conn.exec_driver_sql(f"INSERT INTO {child} SELECT * FROM temp.{child}__kept")
            conn.exec_driver_sql(f"DROP TABLE temp.{child}__kept")
    for statement in _INDEXES:
        conn.exec_driver_sql(statement)
