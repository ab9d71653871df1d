"""The services on the rbd backend, through the real CLI, on each catalog (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import pytest

from provider.backends.rbd import RbdBackend
from provider.datapath.ceph import Location
from tests.conftest import StoreEnv, write_disk


def _backend(env: StoreEnv) -> RbdBackend:
    backend = env.open().backend()
    assert isinstance(backend, RbdBackend)
    return backend


def _write(backend: RbdBackend, locator: str, offset: int, data: bytes) -> None:
    """Write into a volume's RBD image as a guest would (through librbd)."""
    import rbd

    loc = Location.parse(locator)
    with rbd.Image(backend.cluster.ioctx(loc.pool, loc.namespace), loc.image) as image:
        image.write(data, offset)


def test_upload_register_clone_snapshot_download_and_collect(rbd_env: StoreEnv, tmp_path: Path) -> None:
    env = rbd_env
    disk = write_disk(tmp_path / "d.raw", 24 << 20)
    original = disk.read_bytes()
    # upload from a pipe: the size is unknown until the end, nothing is spooled to a file
    obj = json.loads(env.cli("-o", "json", "object", "upload", "images/d.raw", "-", input=original).stdout)
    assert obj["sha256"] == hashlib.sha256(original).hexdigest()
    assert obj["size"] == len(original)
    env.cli("image", "register", "images/d.raw", "--name", "deb")
    vol = env.json("volume", "create", "web1", "--from", "deb", "--size", "64M", "--no-customize")
    backend = _backend(env)
    store = env.open()
    _write(backend, store.volumes.show("web1").locator, 0, b"volume-data")

    snap = env.json("volume", "snapshot", "web1", "web1-monday")
    assert snap["kind"] == "snapshot"
    shown = env.json("resource", "show", "web1-monday")
    assert shown["dependents"] == 0 and shown["lineage"][0]["name"] == "web1"
    assert store.resources.show("web1")["dependents"] == 1, "the snapshot lives inside the volume's image"

    # the source image goes while the clone needs it: hidden, its RBD snapshot kept
    env.cli("image", "delete", "deb")
    assert env.cli("object", "show", "images/d.raw", check=False).returncode == 1
    out = tmp_path / "monday.raw"
    env.cli("object", "download", "snapshots/web1-monday", str(out))
    monday = out.read_bytes()
    assert len(monday) == 64 << 20
    assert out.stat().st_blocks * 512 <= 32 << 20, "the download skipped the image's holes"
    assert monday[:11] == b"volume-data" and monday[11 : len(original)] == original[11:]

    # the snapshot outlives its volume, and clones of it read the frozen content
    env.cli("volume", "delete", "web1")
    env.cli("volume", "create", "restored", "--from", "web1-monday")
    store = env.open()
    content = io.BytesIO()
    store.backend().export_stream(store.volumes.show("restored").locator, "raw", content)
    assert content.getvalue() == monday

    assert env.json("fsck")["clean"]
    env.cli("volume", "delete", "restored")
    env.cli("image", "delete", "web1-monday")
    assert list(backend.list_locators()) == [], "everything hidden was collected"
    assert vol["backend"] == "rbd"


def test_download_to_stdout_streams_the_bytes(rbd_env: StoreEnv, tmp_path: Path) -> None:
    disk = write_disk(tmp_path / "d.raw", 8 << 20, every=4096)
    rbd_env.cli("object", "upload", "images/d.raw", str(disk))
    proc = rbd_env.cli("object", "download", "images/d.raw")
    assert proc.stdout == disk.read_bytes()


def test_disguised_qcow2_is_not_registered_as_raw(rbd_env: StoreEnv, tmp_path: Path) -> None:
    qcow2 = tmp_path / "x.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), "16M"], check=True)
    rbd_env.cli("object", "upload", "images/x", str(qcow2))
    proc = rbd_env.cli("image", "register", "images/x", "--name", "x", check=False)
    assert proc.returncode == 1
    assert "holds a qcow2 image, not a raw disk" in proc.stderr.decode()


def test_fsck_finds_and_removes_an_orphan_image(rbd_env: StoreEnv) -> None:
    backend = _backend(rbd_env)
    orphan = backend.new_locator("33333333-0000-0000-0000-000000000001", "rw")
    backend.create_empty(orphan, 1 << 20)
    proc = rbd_env.cli("-o", "json", "fsck", check=False)
    assert proc.returncode == 1, "fsck exits 1 while problems remain"
    assert orphan in proc.stdout.decode()
    rbd_env.cli("fsck", "--repair")
    assert not backend.exists(orphan)


@pytest.mark.parametrize("ref", ["nope", "images/nope"])
def test_missing_references_fail_in_one_line(rbd_env: StoreEnv, ref: str) -> None:
    proc = rbd_env.cli("object", "download", ref, check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip().splitlines() == [f"atoll: error: object {ref!r} not found"]
