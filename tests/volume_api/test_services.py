"""The Volume API's service layer on a real store: quotas, volumes, snapshots, attachments, bad input."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from provider.errors import Conflict, InUse, InvalidInput, NotFound, PermissionDenied, QuotaExceeded
from provider.services import Store
from provider.services.quotas import GIB
from tests.conftest import StoreEnv, write_disk
from tests.customization import verify
from tests.volume_api.conftest import add_image, add_snapshot_image


def _resource_ids(store: Store) -> set[str]:
    with store.catalog.read() as conn:
        return {r for (r,) in conn.exec_driver_sql("SELECT id FROM resources WHERE state = 'available'")}


# ---- quotas ---------------------------------------------------------------------------------------------
def test_quota_defaults_usage_and_admin_only_changes(alice: Store, admin: Store, tmp_path: Path) -> None:
    q = alice.quotas.show()
    assert q.project == "alice"
    assert q.limits == {"volumes": 10, "snapshots": 10, "gigabytes": 1000, "images": -1, "object_bytes": -1}
    assert q.usage == dict.fromkeys(q.limits, 0)

    add_snapshot_image(alice, tmp_path)
    alice.volume_api.create(2)
    used = alice.quotas.show().usage
    # the pattern disk is a snapshot-type image: 1 snapshot (1 GiB rounded up) + a 2 GiB volume
    assert used == {"volumes": 1, "snapshots": 1, "gigabytes": 3, "images": 0, "object_bytes": 32 << 20}

    with pytest.raises(PermissionDenied):
        alice.quotas.set("alice", {"volumes": 100})
    with pytest.raises(PermissionDenied):
        alice.quotas.show("bob")
    admin.quotas.set("*", {"snapshots": 3})
    admin.quotas.set("alice", {"volumes": 1})
    assert alice.quotas.show().limits["volumes"] == 1
    assert alice.quotas.show().limits["snapshots"] == 3
    assert admin.quotas.show("bob").limits["volumes"] == 10
    for bad in ({"disks": 1}, {"volumes": -2}, {"volumes": True}):
        with pytest.raises(InvalidInput):
            admin.quotas.set("alice", bad)


def test_quota_exceeded_creates_nothing(alice: Store, admin: Store, tmp_path: Path) -> None:
    admin.quotas.set("alice", {"volumes": 1, "gigabytes": 5, "snapshots": 0})
    vol = alice.volume_api.create(2, name="one")
    before = _resource_ids(alice)
    with pytest.raises(QuotaExceeded, match="volumes of project alice: 1 used"):
        alice.volume_api.create(1, name="two")
    admin.quotas.set("alice", {"volumes": 5})
    with pytest.raises(QuotaExceeded, match="gigabytes"):
        alice.volume_api.create(4, name="big")
    with pytest.raises(QuotaExceeded, match="gigabytes"):
        alice.volume_api.extend(vol.id, 6)
    with pytest.raises(QuotaExceeded, match="snapshots"):
        alice.volume_snapshots.create(vol.id)
    assert _resource_ids(alice) == before
    assert alice.volume_api.show(vol.id).size == 2 * GIB


# ---- volumes --------------------------------------------------------------------------------------------
def test_create_from_snapshot_volume_and_empty_then_update_list_delete(alice: Store, tmp_path: Path) -> None:
    snap_id = add_snapshot_image(alice, tmp_path)
    from_snap = alice.volume_api.create(None, snapshot_id=snap_id, name="s1", metadata={"tier": "gold"})
    expected = (snap_id, GIB, "available")  # sizes are whole GiB
    assert (from_snap.snapshot_id, from_snap.size, from_snap.status) == expected
    assert from_snap.metadata == {"tier": "gold"} and not from_snap.bootable
    clone = alice.volume_api.create(1, source_volid=from_snap.id, name="c1", description="a copy")
    assert (clone.source_volid, clone.description, clone.size) == (from_snap.id, "a copy", GIB)
    empty = alice.volume_api.create(1)
    assert empty.name.startswith("volume-") and empty.image_id is None
    # the clone's hidden source snapshot is neither a listed snapshot nor an image
    assert [s.id for s in alice.volume_snapshots.list()] == [snap_id]

    updated = alice.volume_api.update(clone.id, name="c2", description="renamed", metadata={"a": "b"})
    assert (updated.name, updated.description, updated.metadata) == ("c2", "renamed", {"a": "b"})
    assert alice.volume_api.set_metadata(clone.id, {"c": "d"}) == {"a": "b", "c": "d"}
    alice.volume_api.delete_metadata(clone.id, "a")
    assert alice.volume_api.show(clone.id).metadata == {"c": "d"}

    listed = alice.volume_api.list()
    assert [v.id for v in listed] == [empty.id, clone.id, from_snap.id]  # newest first
    assert [v.id for v in alice.volume_api.list(sort_key="name", sort_dir="asc")] == [
        clone.id,
        from_snap.id,
        empty.id,
    ]
    assert [v.id for v in alice.volume_api.list(metadata={"tier": "gold"})] == [from_snap.id]
    page = alice.volume_api.list(limit=1, marker=empty.id)
    assert [v.id for v in page] == [clone.id]
    with pytest.raises(InvalidInput, match="marker"):
        alice.volume_api.list(marker="nope")
    with pytest.raises(InvalidInput):
        alice.volume_api.list(sort_key="owner")

    for vol in (from_snap, clone, empty):
        alice.volume_api.delete(vol.id)
    assert alice.volume_api.list() == []
    with pytest.raises(NotFound):
        alice.volume_api.show(clone.id)


def test_bad_input_is_refused_and_creates_nothing(alice: Store, tmp_path: Path) -> None:
    snap_id = add_snapshot_image(alice, tmp_path)
    before = _resource_ids(alice)
    cases = [
        ({"size_gib": 0}, InvalidInput),
        ({"size_gib": "1"}, InvalidInput),
        ({"size_gib": 1, "metadata": {"admin_password": "x"}}, InvalidInput),
        ({"size_gib": 1, "metadata": {"ssh_key": "ssh-ed25519 AAAA"}}, InvalidInput),
        ({"size_gib": 1, "metadata": {"k": 1}}, InvalidInput),
        ({"size_gib": 1, "name": "bad name"}, InvalidInput),
        ({"size_gib": 1, "image_ref": snap_id, "snapshot_id": snap_id}, InvalidInput),
        ({"size_gib": 1, "image_ref": "0" * 8 + "-0000-0000-0000-" + "0" * 12}, NotFound),
        ({"size_gib": 1, "snapshot_id": "../etc"}, NotFound),
    ]
    for kwargs, error in cases:
        with pytest.raises(error):
            alice.volume_api.create(**kwargs)  # type: ignore[arg-type]
    assert _resource_ids(alice) == before
    big = alice.volume_api.create(2, name="big")
    with pytest.raises(InvalidInput, match="smaller than its source"):
        alice.volume_api.create(1, source_volid=big.id, name="tiny")
    assert _resource_ids(alice) == before | {big.id}  # the clone's source snapshot is gone too


def test_other_projects_ids_are_not_found(alice: Store, bob: Store, tmp_path: Path) -> None:
    vol = alice.volume_api.create(1, name="mine")
    snap = alice.volume_snapshots.create(vol.id, name="mine-snap")
    for call in (
        lambda: bob.volume_api.show(vol.id),
        lambda: bob.volume_api.delete(vol.id),
        lambda: bob.volume_api.extend(vol.id, 2),
        lambda: bob.volume_api.update(vol.id, name="theirs"),
        lambda: bob.volume_api.upload_to_image(vol.id, "stolen"),
        lambda: bob.volume_api.create(1, source_volid=vol.id),
        lambda: bob.volume_api.create(1, snapshot_id=snap.id),
        lambda: bob.volume_snapshots.show(snap.id),
        lambda: bob.volume_snapshots.delete(snap.id),
        lambda: bob.volume_snapshots.create(vol.id),
    ):
        with pytest.raises(NotFound):
            call()
    assert bob.volume_api.list() == [] and bob.volume_snapshots.list() == []
    assert alice.volume_api.show(vol.id).name == "mine"


def test_extend_never_shrinks(alice: Store) -> None:
    vol = alice.volume_api.create(2)
    for size in (1, 2):
        with pytest.raises(InvalidInput, match="must be larger"):
            alice.volume_api.extend(vol.id, size)
    assert alice.volume_api.extend(vol.id, 3).size == 3 * GIB


# ---- snapshots and images -------------------------------------------------------------------------------
def test_snapshot_and_upload_to_image_are_metadata_only(alice: Store, tmp_path: Path) -> None:
    snap_id = add_snapshot_image(alice, tmp_path)
    vol = alice.volume_api.create(None, snapshot_id=snap_id, name="src")
    snap = alice.volume_snapshots.create(vol.id, name="monday", description="weekly", metadata={"k": "v"})
    assert (snap.volume_id, snap.description, snap.metadata) == (vol.id, "weekly", {"k": "v"})
    res = alice.resources.get(snap.id)
    assert res.kind == "snapshot" and res.object is not None and res.object.container == "snapshots"
    assert alice.images.show(snap.id).id == snap.id  # the same id in the Image API's view
    assert [s.id for s in alice.volume_snapshots.list(volume_id=vol.id)] == [snap.id]
    assert alice.volume_snapshots.update(snap.id, name="tuesday", description="moved").name == "tuesday"
    assert alice.volume_snapshots.show(snap.id).description == "moved"

    image = alice.volume_api.upload_to_image(vol.id, "golden", visibility="public")
    assert (image.kind, image.image.visibility if image.image else None) == ("image", "public")
    with pytest.raises(InvalidInput, match="raw/bare"):
        alice.volume_api.upload_to_image(vol.id, "golden2", disk_format="qcow2")

    # delete in any order: the data of what something depends on stays until nothing does
    alice.volume_api.delete(vol.id)
    again = alice.volume_api.create(None, snapshot_id=snap.id, name="restored")
    alice.volume_snapshots.delete(snap.id)
    with pytest.raises(NotFound):
        alice.volume_snapshots.show(snap.id)
    assert alice.volume_api.show(again.id).status == "available"
    alice.volume_api.delete(again.id)
    alice.images.delete(image.id)
    alice.images.delete(snap_id)
    with alice.catalog.read() as conn:
        left = conn.exec_driver_sql("SELECT count(*) FROM resources").scalar_one()
    assert left == 0


# ---- attachments ----------------------------------------------------------------------------------------
def test_attachment_lifecycle_and_refusals(alice: Store) -> None:
    vol = alice.volume_api.create(1, name="disk1")
    with pytest.raises(InvalidInput, match="own host"):
        alice.volume_attachments.create(vol.id, connector={"host": "elsewhere"})
    assert alice.volume_api.show(vol.id).status == "available"
    # Nova's order: reserve (no connector), update with the connector, complete
    att, info = alice.volume_attachments.create(vol.id, connector=None, instance_uuid="i-1")
    assert (att.status, info, alice.volume_api.show(vol.id).status) == ("reserved", {}, "reserved")
    with pytest.raises(Conflict, match="no connector"):
        alice.volume_attachments.complete(att.id or "")
    with pytest.raises(InvalidInput, match="own host"):
        alice.volume_attachments.update(att.id or "", {"host": "elsewhere"})
    assert alice.volume_attachments.show(att.id or "")[0].status == "reserved"
    att, info = alice.volume_attachments.update(att.id or "", {"platform": "x86_64"})
    assert att.status == "attaching" and att.instance_uuid == "i-1"
    assert info["driver_volume_type"] == "local" and info["data"]["device_path"].startswith("/dev/loop")
    assert alice.volume_api.show(vol.id).status == "attaching"
    assert alice.volume_attachments.complete(att.id or "").status == "attached"
    shown = alice.volume_api.show(vol.id)
    assert shown.status == "in-use" and [a.id for a in shown.attachments] == [att.id]
    assert alice.volume_attachments.list(vol.id)[0].id == att.id

    # a reservation is dropped without touching the data path
    other = alice.volume_api.create(1, name="disk2")
    reserved, _ = alice.volume_attachments.create(other.id, connector={})
    with pytest.raises(InUse):
        alice.volume_api.delete(other.id)
    alice.volume_attachments.delete(reserved.id or "")
    alice.volume_api.delete(other.id)

    with pytest.raises(InUse):
        alice.volume_attachments.create(vol.id, connector={})
    with pytest.raises(InUse, match="detach it"):
        alice.volume_api.delete(vol.id)
    with pytest.raises(Conflict, match="force"):
        alice.volume_snapshots.create(vol.id)
    snap = alice.volume_snapshots.create(vol.id, force=True)  # live, through the data path
    assert alice.volume_api.extend(vol.id, 2).size == 2 * GIB  # live grow
    alice.volume_attachments.delete(att.id or "")
    assert alice.volume_api.show(vol.id).status == "available"
    with pytest.raises(NotFound):
        alice.volume_attachments.show(att.id or "")
    alice.volume_api.delete(vol.id)
    alice.volume_snapshots.delete(snap.id)


# ---- customization --------------------------------------------------------------------------------------
def test_image_clone_gets_no_secret_tasks(alice: Store, guest_image: Path) -> None:
    image_id = add_image(alice, guest_image, "guest")
    vol = alice.volume_api.create(2, image_ref=image_id, name="web-1")
    assert vol.status == "available" and vol.image_id == image_id and vol.bootable
    named = alice.volume_api.create(2, image_ref=image_id, name="db_1", metadata={"hostname": "db1"})
    with pytest.raises(InvalidInput, match="hostname"):
        alice.volume_api.create(2, image_ref=image_id, metadata={"hostname": "-bad-"})
    for vid, hostname in ((vol.id, "web-1"), (named.id, "db1")):
        att = alice.volumes.attach(vid)
        try:
            raw = Path(att.path or att.device or "")  # the raw file (512-byte sectors) behind the device
            verify.assert_fills_partition(raw, 1, "ext4")
            with verify.guest_root(raw, 1, "ext4") as root:
                assert (root / "etc/hostname").read_text().strip() == hostname
        finally:
            alice.volumes.detach(vid)


def test_volume_from_a_data_image_is_its_bytes(alice: Store, tmp_path: Path) -> None:
    """An image that is no Linux system and names no OSFAMILY (a data disk, an ISO) is cloned as it is."""
    data = write_disk(tmp_path / "data.raw", 16 << 20)  # a pattern, no partition table
    size, original = verify.digest(data)
    vol = alice.volume_api.create(1, image_ref=add_image(alice, data, "data", {}), name="data-1")
    assert vol.status == "available" and vol.size == GIB
    att = alice.volumes.attach(vol.id)
    try:
        with open(att.path or att.device or "", "rb") as f:
            assert hashlib.sha256(f.read(size)).hexdigest() == original
    finally:
        alice.volumes.detach(vol.id)


def test_failed_customization_leaves_no_volume_and_an_error(alice: Store, tmp_path: Path) -> None:
    # an image naming OSFAMILY (add_image's default properties) with no partition table: growth fails
    garbage = write_disk(tmp_path / "garbage.raw", 64 << 20)
    image_id = add_image(alice, garbage, "broken")
    before = _resource_ids(alice)
    failed = alice.volume_api.create(1, image_ref=image_id, name="doomed")
    assert failed.status == "error" and failed.error and "doomed" in failed.error
    assert "the volume: no readable partition table" in failed.error and "/dev/" not in failed.error
    assert _resource_ids(alice) == before  # no volume left
    assert alice.volume_api.show(failed.id).status == "error"
    assert [v.status for v in alice.volume_api.list()] == ["error"]
    alice.volume_api.delete(failed.id)
    assert alice.volume_api.list() == []
    with pytest.raises(NotFound):
        alice.volume_api.show(failed.id)


def test_user_messages_say_why_and_expire(alice: Store, bob: Store, admin: Store, tmp_path: Path) -> None:
    image_id = add_image(alice, write_disk(tmp_path / "garbage.raw", 64 << 20), "broken")
    failed = [alice.volume_api.create(1, image_ref=image_id, name=f"doomed-{i}") for i in range(3)]
    newest_first = alice.volume_messages.list()
    assert [m.resource_uuid for m in newest_first] == [f.id for f in reversed(failed)]
    assert all(
        m.user_message == f"copy image to volume: {f.error}"
        for m, f in zip(newest_first[::-1], failed, strict=True)
    )
    assert [m.id for m in alice.volume_messages.list(sort_dir="asc")] == [
        m.id for m in reversed(newest_first)
    ]
    page = alice.volume_messages.list(limit=1, marker=newest_first[0].id)
    assert page == newest_first[1:2] and alice.volume_messages.list(offset=2) == newest_first[2:]
    assert alice.volume_messages.list({"resource_uuid": failed[0].id}) == newest_first[2:]
    assert bob.volume_messages.list() == [] and len(admin.volume_messages.list({"project_id": "alice"})) == 3
    with pytest.raises(NotFound):
        bob.volume_messages.delete(newest_first[0].id)
    with pytest.raises(InvalidInput, match="filtered by 'owner'"):
        alice.volume_messages.list({"owner": "bob"})
    with pytest.raises(InvalidInput, match="marker"):
        alice.volume_messages.list(marker="no-such-message")
    alice.volume_messages.delete(newest_first[0].id)
    with pytest.raises(NotFound):
        alice.volume_messages.show(newest_first[0].id)
    with alice.catalog.write() as conn:  # past their guaranteed_until: not shown, and gone at the next one
        conn.exec_driver_sql("UPDATE volume_messages SET guaranteed_until = '2000-01-01T00:00:00.000000Z'")
    assert alice.volume_messages.list() == []
    alice.volume_api.create(1, image_ref=image_id, name="doomed-again")
    with alice.catalog.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM volume_messages").scalar() == 1


def test_object_bytes_and_image_quotas_store_nothing(alice: Store, admin: Store, tmp_path: Path) -> None:
    admin.quotas.set("alice", {"object_bytes": 3 << 20, "images": 0})
    small = write_disk(tmp_path / "small.raw", 2 << 20)
    with open(small, "rb") as f:
        obj = alice.objects.upload("data/a.raw", f)
    before = _resource_ids(alice)
    for expect_size in (2 << 20, None):  # declared (refused before storing) or found at the end
        with open(small, "rb") as f, pytest.raises(QuotaExceeded, match="object_bytes"):
            alice.objects.upload("data/b.raw", f, expect_size=expect_size)
    with pytest.raises(QuotaExceeded, match="object_bytes"):
        alice.objects.copy(obj.id, "data/c.raw")
    assert _resource_ids(alice) == before
    with alice.catalog.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM resources WHERE state != 'available'").scalar() == 0
    vol = alice.volume_api.create(1)
    with pytest.raises(QuotaExceeded, match="images"):
        alice.volume_api.upload_to_image(vol.id, "no-room")
    with pytest.raises(QuotaExceeded, match="images"):
        alice.image_adoption.adopt(obj.id, {"name": "adopted"}, {}, [])
    assert alice.resources.get(obj.id).kind == "object"


def test_admin_lists_its_project_unless_asked_for_all(alice: Store, admin: Store) -> None:
    vol = alice.volume_api.create(1, name="alices")
    assert admin.volume_api.list() == []
    assert [v.id for v in admin.volume_api.list(all_projects=True)] == [vol.id]
    assert [v.id for v in alice.volume_api.list(all_projects=True)] == [vol.id]  # only an admin's widens
    assert admin.volume_api.show(vol.id).owner == "alice"


def test_userspace_attachment_gives_an_nbd_socket_or_a_file(alice: Store, api_env: StoreEnv) -> None:
    vol = alice.volume_api.create(1, name="user-disk")
    att, info = alice.volume_attachments.create(vol.id, connector={"atoll_userspace": True})
    try:
        if api_env.backend == "qcow2":  # a qemu-storage-daemon serves it on a unix socket
            assert info["driver_volume_type"] == "nbd"
            assert stat.S_ISSOCK(os.stat(info["data"]["socket_path"]).st_mode)
            assert info["data"]["uri"].startswith("nbd:unix:")
        else:  # reflink: QEMU opens the raw file itself
            assert info["driver_volume_type"] == "local"
            assert Path(info["data"]["device_path"]).is_file()
    finally:
        alice.volume_attachments.delete(att.id or "")
    assert alice.volume_api.show(vol.id).status == "available"
    alice.volume_api.delete(vol.id)


def test_rbd_attachment_gives_pool_image_and_user(rbd_env: StoreEnv) -> None:
    store = rbd_env.open("alice", admin=False)
    vol = store.volume_api.create(1, name="ceph-disk")
    att, info = store.volume_attachments.create(vol.id, connector={"atoll_userspace": True})
    try:
        assert info["driver_volume_type"] == "rbd"
        data = info["data"]
        assert data["pool"] == rbd_env.config.store.pool and data["image"].endswith(vol.id)
        assert data["name"] == f"{data['pool']}/{data['image']}"
        assert data["auth_username"] == rbd_env.config.store.user
        assert data["uri"].startswith("rbd:")
    finally:
        store.volume_attachments.delete(att.id or "")
    store.volume_api.delete(vol.id)
