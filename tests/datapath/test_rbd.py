"""The rbd data path on the session's micro Ceph: rbd-fuse + loop (this kernel has no rbd or nbd module),
QEMU's rbd: URI, libvirt XML, live grow, and the write lock between nodes."""

from __future__ import annotations

import io
import os
import re
import subprocess
from pathlib import Path

import pytest

from provider.backends.rbd import RbdBackend
from provider.config import StoreConfig
from provider.datapath import rbd as rbd_path
from provider.datapath import rbd_locks
from provider.datapath.ceph import Location
from provider.datapath.libvirt import disk_xml
from provider.errors import DataPathError, InUse
from tests.conftest import StoreEnv, backend_env
from tests.datapath.conftest import IMAGE_SIZE, Disks, read_at, sha256_file, write_direct
from tests.helpers import need, need_root, need_tools

# Ganeti 3.1 (kvm_utils.ParseStorageUriToBlockdevParam) accepts exactly this for userspace rbd disks.
GANETI_31_RBD = re.compile(r"^rbd:\w+/[a-z0-9-.]+(:id=\w+)?$")


@pytest.fixture
def renv(request: pytest.FixtureRequest, tmp_path: Path, checked: list[StoreEnv]) -> StoreEnv:
    """An rbd store (SQLite catalog), leak-checked after the test."""
    need_root()
    need_tools("losetup", "rbd-fuse", "fusermount3", "rados", "qemu-img")
    need(os.path.exists("/dev/fuse"), "needs /dev/fuse")
    env = backend_env("rbd", request, tmp_path, "")
    checked.append(env)
    return env


@pytest.fixture
def rdisks(renv: StoreEnv, tmp_path: Path) -> Disks:
    return Disks(renv.open(), tmp_path)


def _backend(disks: Disks) -> RbdBackend:
    backend = disks.store.backend()
    assert isinstance(backend, RbdBackend)
    return backend


def test_kernelspace_attach_writes_reach_ceph_and_survive_reattach(rdisks: Disks) -> None:
    store = rdisks.store
    vid = rdisks.volume("v1")
    att = store.volumes.attach(vid)
    assert att.kind == "block" and att.device and att.device.startswith("/dev/loop")
    assert sha256_file(att.device, IMAGE_SIZE) == rdisks.digest
    assert store.volumes.attach(vid) == att, "attach is idempotent"
    written = {off: os.urandom(256 << 10) for off in range(0, IMAGE_SIZE, 3 << 20)}  # across objects
    for off, data in written.items():
        write_direct(att.device, off, data)
    store.volumes.detach(vid)
    out = io.BytesIO()
    store.backend().export_stream(store.volumes.show(vid).locator, "raw", out)  # librbd, not rbd-fuse
    assert all(out.getvalue()[off : off + len(d)] == d for off, d in written.items()), "writes lost"
    again = store.volumes.attach(vid)
    assert all(read_at(again.device or "", off, len(d)) == d for off, d in written.items())
    store.volumes.detach(vid)
    image = store.images.show(rdisks.image.id)
    assert image.sha256 == rdisks.digest, "the image never changes"


def test_snapshot_attaches_read_only_through_a_view(rdisks: Disks) -> None:
    store = rdisks.store
    vid = rdisks.volume("v1")
    snap = store.volumes.snapshot(vid, "v1-snap")
    att = store.volumes.attach(snap.id)
    assert att.mode == "ro"
    assert sha256_file(att.device or "", IMAGE_SIZE) == rdisks.digest
    with pytest.raises(OSError):
        write_direct(att.device or "", 0, b"x" * 4096)
    store.volumes.detach(snap.id)
    cfg = store.config.store
    ls = ["rbd", "-c", cfg.ceph_conf, "ls", f"{cfg.pool}/{cfg.namespace}"]
    names = subprocess.run(ls, capture_output=True, text=True, check=True).stdout.split()
    assert not [n for n in names if n.startswith("atoll.view-")], "the view clone went with the detach"


def test_live_grow_reaches_the_device(rdisks: Disks) -> None:
    store = rdisks.store
    vid = rdisks.volume("v1")
    att = store.volumes.attach(vid)
    store.volumes.grow(vid, 2 * IMAGE_SIZE)
    sectors = Path(f"/sys/block/{os.path.basename(att.device or '')}/size").read_text()
    assert int(sectors) * 512 == 2 * IMAGE_SIZE
    store.volumes.detach(vid)


def test_userspace_attach_gives_qemu_and_libvirt_what_they_open(rdisks: Disks, tmp_path: Path) -> None:
    store = rdisks.store
    vid = rdisks.volume("v1")
    att = store.volumes.attach(vid, userspace=True)
    assert att.kind == "rbd" and att.device is None and att.uri
    loc = Location.parse(store.volumes.show(vid).locator)
    assert att.uri.startswith(f"rbd:{loc.pool}/{loc.namespace}/{loc.image}:id=admin:conf=")
    copy = tmp_path / "copy.raw"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", att.uri, str(copy)], check=True)
    assert sha256_file(copy, IMAGE_SIZE) == rdisks.digest
    xml = disk_xml(att, store.config.libvirt, target="vdb")
    assert f"<source protocol='rbd' name='{loc.spec}'>" in xml
    assert "<auth username='admin'>" in xml and "<secret type='ceph' usage='client.admin secret'/>" in xml
    store.volumes.detach(vid)


def test_production_uri_is_the_form_ganeti_31_accepts() -> None:
    loc = Location("atoll", "", "atoll-0b2e7c1e-1111-4222-8333-944445555666")
    plain = rbd_path.qemu_uri(StoreConfig(backend="rbd", pool="atoll"), loc)
    assert plain == "rbd:atoll/atoll-0b2e7c1e-1111-4222-8333-944445555666:id=admin"
    assert GANETI_31_RBD.match(plain)
    odd = rbd_path.qemu_uri(StoreConfig(backend="rbd", ceph_conf="/etc/a:b.conf"), loc)
    assert odd.endswith(r":conf=/etc/a\:b.conf"), "a colon in a value is escaped for QEMU"


def test_no_kernelspace_path_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rbd_path.shutil, "which", lambda *_a, **_k: None)
    with pytest.raises(DataPathError, match="neither the rbd nor the nbd module, and rbd-fuse"):
        rbd_path.kernel_path()


def test_write_lock_held_by_another_node_refuses_attach(rdisks: Disks) -> None:
    store = rdisks.store
    vid = rdisks.volume("v1")
    backend = _backend(rdisks)
    header = rbd_locks.Header.of(backend, store.volumes.show(vid).locator, store.run)
    header.ioctx.lock_exclusive(header.oid, rbd_locks.NAME, rbd_locks.cookie("node-b"), desc="test")
    with pytest.raises(InUse, match="attached for writing on node-b"):
        store.volumes.attach(vid)
    with pytest.raises(InUse, match="attached for writing on node-b"):
        store.volumes.attach(vid, userspace=True)
    ro = store.volumes.attach(vid, readonly=True)  # readers need no lock
    store.volumes.detach(vid)
    assert ro.mode == "ro"
    header.ioctx.unlock(header.oid, rbd_locks.NAME, rbd_locks.cookie("node-b"))
    store.volumes.attach(vid, userspace=True)
    assert rbd_locks.holders(header).held == "exclusive"
    store.volumes.detach(vid)
    assert rbd_locks.holders(header).held is None, "detach releases the lock"


def test_a_stale_rbd_lock_is_reported_not_waited_for(rdisks: Disks) -> None:
    import rados
    import rbd

    store = rdisks.store
    vid = rdisks.volume("v1")
    loc = Location.parse(store.volumes.show(vid).locator)
    with rados.Rados(conffile=store.config.store.ceph_conf) as other, other.open_ioctx(loc.pool) as io_ctx:
        io_ctx.set_namespace(loc.namespace)
        with rbd.Image(io_ctx, loc.image) as image:
            image.lock_exclusive("someone")  # `rbd lock add`: librbd writers would wait for it forever
    with pytest.raises(DataPathError, match=r"carries an 'rbd lock'.*rbd lock rm"):
        store.volumes.attach(vid)
    with _backend(rdisks).open_image(str(loc)) as image:
        client, ck, _ = image.list_lockers()["lockers"][0]
        image.break_lock(client, ck)
    store.volumes.attach(vid, userspace=True)
    store.volumes.detach(vid)
