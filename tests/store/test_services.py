"""Invariants of the unified resource model, on every file backend (ARCHITECTURE §1)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from provider.errors import AlreadyExists, Ambiguous, Conflict, InvalidInput, NotFound, PermissionDenied
from provider.services import Store
from tests.conftest import StoreEnv, write_disk


def upload(store: Store, path: str, disk: Path):  # type: ignore[no-untyped-def]
    with open(disk, "rb") as f:
        return store.objects.upload(path, f)


def read_all(store: Store, ref: str) -> bytes:
    """The disk content of any resource, volumes included (through its backend)."""
    res = store.resources.get(ref)
    out = io.BytesIO()
    store.backend(res.backend).export_stream(res.locator, res.disk_format, out)
    return out.getvalue()


def data_file(store: Store, ref: str) -> os.stat_result:
    res = store.resources.get(ref)
    return store.backend(res.backend).path(res.locator).stat()


def test_kind_follows_metadata_and_conversions_touch_no_data(store: Store, disk: Path) -> None:
    obj = upload(store, "images/d.raw", disk)
    assert obj.kind == "object"
    before = data_file(store, obj.id)
    digest = hashlib.sha256(disk.read_bytes()).hexdigest()
    assert obj.sha256 == digest

    assert store.images.register("images/d.raw", "deb", properties={"OSFAMILY": "linux"}).kind == "image"
    assert store.images.to_snapshot("deb").kind == "snapshot"
    assert store.images.to_image("deb").kind == "image"
    assert store.images.unregister("deb").kind == "object"

    after = data_file(store, obj.id)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    assert hashlib.sha256(read_all(store, obj.id)).hexdigest() == digest


def test_clone_and_snapshot_copy_no_data(store: Store, tmp_path: Path) -> None:
    big = write_disk(tmp_path / "big.raw", 256 << 20, every=4096)  # fully written
    upload(store, "images/big.raw", big)
    store.images.register("images/big.raw", "big")
    vol = store.volumes.create("v", size=1 << 30, source="big")
    snap = store.volumes.snapshot("v", "v-snap")
    clone = store.volumes.create("v2", source="v-snap")
    backend = store.backend()
    for res in (vol, clone, store.resources.get("v")):
        assert backend.allocated_bytes(res.locator) < 1 << 20, f"{res.name} holds data"
    if backend.name == "qcow2":  # the snapshot froze the volume's (empty) overlay
        assert backend.allocated_bytes(snap.locator) < 1 << 20
    assert read_all(store, "v2")[: 256 << 20] == big.read_bytes()
    assert snap.kind == "snapshot" and snap.parent == vol.id
    assert snap.object is not None and snap.object.path == "snapshots/v-snap"


def test_100g_snapshot_and_clone_are_thin(store: Store) -> None:
    store.volumes.create("huge", size=100 << 30)
    snap = store.volumes.snapshot("huge", "huge-snap")
    clone = store.volumes.create("huge-clone", source="huge-snap", size=200 << 30)
    backend = store.backend()
    assert (snap.size, clone.size) == (100 << 30, 200 << 30)
    for res in (snap, clone, store.resources.get("huge")):
        assert backend.allocated_bytes(res.locator) < 1 << 20


def test_clone_outlives_its_image(store: Store, disk: Path) -> None:
    obj = upload(store, "images/d.raw", disk)
    store.images.register(obj.id, "deb")
    store.volumes.create("v", source="deb")
    expected = read_all(store, "v")
    with pytest.raises(Conflict, match="still registered as image 'deb'"):
        store.objects.delete("images/d.raw")
    store.images.unregister("deb")
    store.objects.delete("images/d.raw")
    with pytest.raises(NotFound):
        store.objects.show("images/d.raw")
    assert read_all(store, "v") == expected
    backend = store.backend()
    base_kept = backend.exists(obj.locator)
    assert base_kept == (backend.name == "qcow2"), "only a chained clone keeps its base"
    store.volumes.delete("v")
    assert not backend.exists(obj.locator), "the base goes with its last dependent"
    assert list(backend.list_locators()) == []


def test_snapshot_chain_collects_in_any_order(store: Store, disk: Path) -> None:
    upload(store, "images/d.raw", disk)
    store.volumes.create("v", source="images/d.raw")
    store.volumes.snapshot("v", "s1")
    store.volumes.snapshot("v", "s2")
    store.volumes.create("c", source="s1")
    store.images.delete("s1")
    store.images.delete("s2")
    store.objects.delete("images/d.raw")
    store.volumes.delete("v")
    assert read_all(store, "c")[: len(disk.read_bytes())] == disk.read_bytes()
    store.volumes.delete("c")
    assert list(store.backend().list_locators()) == []
    assert store.fsck.run().clean


def test_writes_to_a_volume_never_reach_its_source_or_snapshots(store: Store, disk: Path) -> None:
    upload(store, "images/d.raw", disk)
    store.volumes.create("v", source="images/d.raw")
    store.volumes.snapshot("v", "s")
    v = store.resources.get("v")
    backend = store.backend()
    if backend.name == "qcow2":
        backend.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", str(backend.path(v.locator))])
    else:
        with open(backend.path(v.locator), "r+b") as f:
            f.write(b"\x5a" * (1 << 20))
    assert read_all(store, "v")[: 1 << 20] == b"\x5a" * (1 << 20)
    assert read_all(store, "s") == read_all(store, "images/d.raw") == disk.read_bytes()


def test_grow(store: Store) -> None:
    store.volumes.create("v", size=16 << 20)
    assert store.volumes.grow("v", 32 << 20).size == 32 << 20
    assert len(read_all(store, "v")) == 32 << 20
    assert store.volumes.grow("v", 32 << 20).size == 32 << 20  # idempotent
    with pytest.raises(InvalidInput, match="cannot shrink"):
        store.volumes.grow("v", 16 << 20)


def test_clear_errors(store: Store, disk: Path) -> None:
    upload(store, "images/d.raw", disk)
    with pytest.raises(AlreadyExists, match=r"object 'images/d\.raw' already exists"):
        upload(store, "images/d.raw", disk)
    store.images.register("images/d.raw", "deb")
    with pytest.raises(InvalidInput, match="smaller than its source"):
        store.volumes.create("v", size=1 << 20, source="deb")
    with pytest.raises(NotFound, match="'nope' not found"):
        store.volumes.create("v", source="nope")
    store.volumes.create("v", size=1 << 20)
    with pytest.raises(AlreadyExists, match="volume 'v' already exists"):
        store.volumes.create("v", size=1 << 20)
    with pytest.raises(Conflict, match="is a volume"):
        store.volumes.create("w", source="v")
    with pytest.raises(Conflict, match="is a volume"):
        store.images.register("v", "img")
    with pytest.raises(AlreadyExists, match="image 'deb' already exists"):
        store.volumes.snapshot("v", "deb")
    store.images.register("images/d.raw", "deb")  # idempotent re-register
    store.volumes.create("deb", size=1 << 20)
    with pytest.raises(Ambiguous, match="use the id"):
        store.resources.get("deb")


def test_disguised_qcow2_upload_is_not_registered_as_raw(store: Store, tmp_path: Path) -> None:
    evil = tmp_path / "evil.raw"
    evil.write_bytes(b"QFI\xfb" + bytes(4092))
    upload(store, "images/evil.raw", evil)
    with pytest.raises(InvalidInput, match="holds a qcow2 image"):
        store.images.register("images/evil.raw", "evil")


def test_protected_properties_and_ownership(env: StoreEnv, disk: Path) -> None:
    alice = env.open("alice")
    root = env.open("root")
    upload(alice, "images/d.raw", disk)
    alice.images.register("images/d.raw", "deb", properties={"OSFAMILY": "linux"})
    with pytest.raises(PermissionDenied, match="ATOLL_TIER is protected"):
        alice.images.set("deb", set_props={"ATOLL_TIER": "gold"})
    root.images.set("deb", set_props={"ATOLL_TIER": "gold"})
    with pytest.raises(PermissionDenied, match="protected"):
        alice.images.set("deb", unset=["ATOLL_TIER"])
    alice.images.set("deb", set_props={"USERS": "root"})  # ordinary properties stay hers
    bob = env.open("bob")
    with pytest.raises(NotFound):
        bob.images.show("deb")
    alice.images.add_member("deb", "bob")
    assert bob.images.show("deb").image.visibility == "shared"  # type: ignore[union-attr]
    bob.volumes.create("bobs", source="deb")
    with pytest.raises(PermissionDenied):
        bob.images.set("deb", set_props={"USERS": "bob"})
    with pytest.raises(PermissionDenied):
        bob.objects.delete("images/d.raw")


def test_snapshot_inherits_image_properties(store: Store, disk: Path) -> None:
    upload(store, "images/d.raw", disk)
    store.images.register("images/d.raw", "deb", properties={"OSFAMILY": "linux", "ROOT_PARTITION": "1"})
    store.volumes.create("v", source="deb")
    snap = store.volumes.snapshot("v", "s")
    assert snap.image is not None
    assert snap.image.properties["OSFAMILY"] == "linux"
    assert snap.image.properties["EXCLUDE_ALL_TASKS"] == "yes"
    image = store.images.to_image("s")
    assert image.kind == "image" and "EXCLUDE_ALL_TASKS" not in image.image.properties  # type: ignore[union-attr]
    lineage = store.resources.show("s")["lineage"]
    assert [a["name"] for a in lineage] == ["v", "deb"]
