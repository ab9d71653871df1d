"""The catalog at scale: listings are one query whatever their length and return exactly what loading
each resource returns; Ganeti-name and container/name lookups use indexes; the Ganeti index is built for
catalogs that predate it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, select

from provider.catalog import SCHEMA_VERSION, Catalog, migrations
from provider.catalog import schema as t
from provider.services import Store
from tests.conftest import StoreEnv


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """The SQL statements ``store``'s catalog sends while the block runs."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith(("BEGIN", "SET", "SELECT pg_advisory")):
            seen.append(statement)

    event.listen(store.catalog.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(store.catalog.engine, "before_cursor_execute", count)


def _populate(store: Store, disk: Path, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        store.volumes.create(
            f"vol{i:04d}", size=1 << 20, ganeti={"VOL_NAME": f"ganeti-{i}", "VOL_UUID": f"u{i}"}
        )


def test_listings_are_one_query_and_match_per_resource_loads(env: StoreEnv, disk: Path) -> None:
    admin = env.open()
    alice = env.open("alice")
    with open(disk, "rb") as f:
        alice.objects.upload("images/a.raw", f)
    alice.images.register("images/a.raw", "alice-private")
    with open(disk, "rb") as f:
        admin.objects.upload("images/b.raw", f)
    admin.images.register("images/b.raw", "shared-one")
    admin.images.add_member("shared-one", "alice")
    admin.images.add_member("shared-one", "bob")
    admin.volumes.snapshot(admin.volumes.create("v", size=1 << 20).name, "v-snap")
    _populate(alice, disk, 3)
    _populate(admin, disk, 3, start=10)

    for store in (admin, alice, env.open("bob")):
        for listing in (store.volumes.list, store.images.list, lambda s=store: s.objects.list()):
            with statements(store) as few:
                found = listing()
            with store.catalog.read() as conn:  # the reference: one full load per resource
                expected = [store.volumes.load(conn, r.id) for r in found]
            assert found == expected
            assert len(few) == 1, few
    assert [v.name for v in alice.volumes.list()] == ["vol0000", "vol0001", "vol0002"]
    assert {i.name for i in env.open("bob").images.list()} == {"shared-one"}
    assert admin.images.show("shared-one").image.members == ("alice", "bob")  # type: ignore[union-attr]

    _populate(admin, disk, 40, start=100)
    with statements(admin) as many:
        assert len(admin.volumes.list()) == 47
    assert len(many) == 1, "the same single query for 47 volumes as for 7"


def _plan(store: Store, sql: str, **params: Any) -> str:
    with store.catalog.read() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, tuple(params.values())).all()
    return " | ".join(str(r[-1]) for r in rows)


def test_ganeti_and_object_lookups_use_indexes(qcow2_env: StoreEnv, disk: Path) -> None:
    store = qcow2_env.open()
    _populate(store, disk, 20)
    with statements(store) as few:
        assert store.volumes.find_by_ganeti("VOL_NAME", "ganeti-7").name == "vol0007"
    _populate(store, disk, 60, start=20)
    with statements(store) as many:
        assert store.volumes.find_by_ganeti("VOL_NAME", "ganeti-70").name == "vol0070"
    assert len(few) == len(many), "no scan: the same statements at 20 and 80 volumes"
    store.volumes.set_ganeti("vol0070", {"VOL_NAME": "renamed"})
    assert store.volumes.find_by_ganeti("VOL_NAME", "renamed").name == "vol0070"
    assert store.volumes.find_by_ganeti("VOL_UUID", "u70").name == "vol0070"
    if store.catalog.is_sqlite:
        plan = _plan(
            store, "SELECT resource_id FROM ganeti_ids WHERE key = ? AND value = ?", k="VOL_NAME", v="x"
        )
        assert "USING COVERING INDEX ganeti_ids_lookup" in plan or "USING INDEX ganeti_ids_lookup" in plan
        plan = _plan(
            store, "SELECT resource_id FROM object_views WHERE container = ? AND name = ?", c="a", n="b"
        )
        assert "USING INDEX object_views_path" in plan, plan


def test_migration_indexes_the_ganeti_identity_of_existing_volumes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v2.sqlite'}"
    old = Catalog(url)
    with old.write() as conn:  # a version-2 catalog with one Ganeti volume
        for steps in migrations.MIGRATIONS[:2]:
            for statement in steps:
                assert isinstance(statement, str)
                conn.exec_driver_sql(statement)
        conn.execute(t.meta.insert().values(key="schema_version", value="2"))
        conn.execute(
            t.resources.insert().values(
                id="r1", size=1, mode="rw", backend="qcow2", locator="r1.qcow2", disk_format="qcow2",
                state="available", owner="root", created_at="x", updated_at="x",
            )
        )  # fmt: skip
        ganeti = json.dumps({"VOL_NAME": "disk-0", "VOL_UUID": "uuid-0", "VOL_SIZE": 10})
        conn.exec_driver_sql(
            "INSERT INTO volume_views VALUES ('r1', 'web1-disk0', 'available', ?, 'x')", (ganeti,)
        )
    assert Catalog(url).migrate() == SCHEMA_VERSION
    with Catalog(url).read() as conn:
        rows = conn.execute(
            select(t.ganeti_ids.c.key, t.ganeti_ids.c.value).order_by(t.ganeti_ids.c.key)
        ).all()
    assert [tuple(r) for r in rows] == [("VOL_NAME", "disk-0"), ("VOL_UUID", "uuid-0")]


def test_writes_do_not_read_queued_images(env: StoreEnv) -> None:
    """Every write reaps the pending operations of dead processes; queued images are pending with no
    owning process, and a Glance catalog can hold thousands: the reaper must not load them one by one
    (it did, and each idle server worker spent a fifth of a core on it)."""
    admin = env.open()

    def write_cost() -> int:
        with statements(admin) as seen:
            admin.volumes.create(f"v{len(admin.volumes.list())}", size=1 << 20)
        return len(seen)

    admin.glance.create({"name": "q-0"}, {}, [])
    few = write_cost()
    for i in range(1, 40):
        admin.glance.create({"name": f"q-{i}"}, {}, [])
    assert write_cost() == few


def test_a_page_of_images_walks_the_listing_order_index(qcow2_env: StoreEnv) -> None:
    """Glance's default page (newest first, 25) reads ~26 rows of the listing-order index once the
    planner has statistics (``atoll serve`` gathers them), instead of sorting every visible image."""
    from provider.services.image_list import ImageQuery, _where, base_query

    store = qcow2_env.open()
    for i in range(60):
        store.glance.create({"name": f"img-{i:02d}"}, {}, [])
    store.catalog.analyze()
    page, more = store.glance.list(ImageQuery(limit=25))
    assert [r.name for r in page] == [f"img-{i:02d}" for i in range(59, 34, -1)] and more
    if store.catalog.is_sqlite:
        v = t.image_views.c
        stmt = (
            base_query()
            .where(*_where(ImageQuery(limit=25), store.caller))
            .order_by(v.created_at.desc(), v.resource_id.desc())
            .limit(26)
        )
        with store.catalog.read() as conn:
            sql = str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))
        plan = _plan(store, sql)
        assert "INDEX image_views_created" in plan and "TEMP B-TREE" not in plan, plan
