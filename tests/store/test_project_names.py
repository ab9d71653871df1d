"""Names are per project: two projects may each have an image, a volume and an object of the same name;
a name resolves to the caller's own resource first, then to what the caller may read of others."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from provider.catalog import SCHEMA_VERSION, Catalog, migrations
from provider.catalog import schema as t
from provider.errors import AlreadyExists, Ambiguous, NotFound
from provider.services import Store
from tests.conftest import StoreEnv


def _populate(store: Store, disk: Path) -> None:
    with open(disk, "rb") as f:
        store.objects.upload("images/d.raw", f)
    store.images.register("images/d.raw", "deb")
    store.volumes.create("v", size=1 << 20)
    store.volumes.snapshot("v", "s")


def test_two_projects_use_the_same_names(env: StoreEnv, disk: Path) -> None:
    alice, bob = env.open("alice", admin=False), env.open("bob", admin=False)
    _populate(alice, disk)
    _populate(bob, disk)  # nothing of alice's is in the way, nor named in an error
    for store, owner in ((alice, "alice"), (bob, "bob")):
        for ref in ("images/d.raw", "deb", "v", "s", "snapshots/s"):
            assert store.resources.get(ref).owner == owner, ref
    with pytest.raises(AlreadyExists, match="image 'deb' already exists"):
        alice.volumes.snapshot("v", "deb")  # inside one project a name stays unique
    with pytest.raises(AlreadyExists, match="volume 'v' already exists"):
        bob.volumes.create("v", size=1 << 20)
    carol = env.open("carol", admin=False)
    with pytest.raises(NotFound):
        carol.resources.get("deb")  # both private: carol learns nothing
    alice.images.set("deb", visibility="public")
    assert carol.resources.get("deb").owner == "alice"  # the one carol may read
    with pytest.raises(NotFound):
        carol.resources.get("v")
    with pytest.raises(Ambiguous, match=r"of project (alice|bob).*of project (alice|bob)"):
        env.open().resources.get("v")  # root (admin) owns none: it must use the id


STORE_WIDE_NAMES = 8  # the last schema with store-wide unique names


def _build_previous(conn: Connection) -> None:
    """Schema 8 (names unique store-wide), holding a shared, tagged image, an object and a volume."""
    for steps in migrations.MIGRATIONS[:STORE_WIDE_NAMES]:
        for step in steps:
            if callable(step):
                step(conn)
            else:
                conn.exec_driver_sql(step)
    conn.execute(t.meta.insert().values(key="schema_version", value=str(STORE_WIDE_NAMES)))
    for rid, mode in (("r1", "ro"), ("r2", "rw"), ("r3", "ro"), ("r4", "ro")):
        conn.execute(
            t.resources.insert().values(
                id=rid, size=1, mode=mode, backend="qcow2", locator=rid, disk_format="raw",
                state="available", owner="alpha", created_at="x", updated_at="x",
            )
        )  # fmt: skip
    conn.execute(
        t.image_views.insert().values(
            resource_id="r1", name="deb", owner="alpha", visibility="shared", status="active",
            disk_format="raw", container_format="bare", properties="{}", created_at="x", updated_at="x",
        )
    )  # fmt: skip
    conn.execute(
        t.image_members.insert().values(
            resource_id="r1", member="beta", status="accepted", created_at="x", updated_at="x"
        )
    )
    conn.execute(t.image_tags.insert().values(resource_id="r1", tag="lts"))
    conn.execute(
        t.object_views.insert().values(
            resource_id="r1", container="images", name="d.raw", content_type="x", meta="{}", created_at="x"
        )
    )
    conn.execute(t.volume_views.insert().values(resource_id="r2", name="v", status="available", ganeti="{}",
                                                created_at="x"))  # fmt: skip


def test_migration_keeps_every_row_and_scopes_image_names(catalog_url: str, tmp_path: Path) -> None:
    url = catalog_url or f"sqlite:///{tmp_path / 'old.sqlite'}"
    with Catalog(url).write() as conn:
        _build_previous(conn)
    assert Catalog(url).migrate() == SCHEMA_VERSION
    with Catalog(url).read() as conn:
        assert conn.execute(select(t.image_members.c.member)).scalars().all() == ["beta"]
        assert conn.execute(select(t.image_tags.c.tag)).scalars().all() == ["lts"]
        assert conn.execute(select(t.image_views.c.name)).scalars().all() == ["deb"]
        assert conn.execute(select(t.object_views.c.name)).scalars().all() == ["d.raw"]
        assert conn.execute(select(t.volume_views.c.name)).scalars().all() == ["v"]
    image = {"name": "deb", "visibility": "private", "status": "active", "disk_format": "raw",
             "container_format": "bare", "properties": "{}", "created_at": "x",
             "updated_at": "x"}  # fmt: skip
    with Catalog(url).write() as conn:  # another project may now take the name
        conn.execute(t.image_views.insert().values(resource_id="r3", owner="beta", **image))
    with pytest.raises(IntegrityError), Catalog(url).write() as conn:  # the same project may not
        conn.execute(t.image_views.insert().values(resource_id="r4", owner="alpha", **image))
