"""Attach and detach on both file backends: bytes, isolation, idempotence, read-only resources, userspace
URIs, clear errors, and nothing left behind (every test is leak-checked by the ``checked`` fixture)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from provider.datapath import loop
from provider.errors import InUse, NotFound, PermissionDenied
from provider.services.local_disk import local_disk
from tests.conftest import StoreEnv
from tests.datapath.conftest import IMAGE_SIZE, Disks, leftovers, read_at, sha256_file, write_direct
from tests.helpers import need_tools

PATTERN = b"written through the device\n".ljust(4096, b".")


def test_attach_reads_the_image_bytes_and_is_idempotent(denv: StoreEnv, disks: Disks) -> None:
    vid = disks.volume("web1")
    att = disks.store.volumes.attach("web1")
    assert (att.kind, att.mode, att.access, att.uri) == ("block", "rw", "kernelspace", None)
    assert att.device is not None and att.device.startswith("/dev/loop")
    assert loop.uses_direct_io(att.device) == (denv.backend == "reflink")  # see qsd.LOOP_DIRECT_IO
    assert sha256_file(att.device, IMAGE_SIZE) == disks.digest
    before = leftovers(denv)
    again = denv.open().volumes.attach(vid)
    assert again == att
    assert leftovers(denv) == before  # nothing new started
    disks.store.volumes.detach("web1")
    disks.store.volumes.detach("web1")  # idempotent
    assert loop.backing_file(att.device) != att.path


def test_writes_change_the_volume_only_and_survive_reattach(denv: StoreEnv, disks: Disks) -> None:
    volumes = disks.store.volumes
    disks.volume("a")
    disks.volume("b")
    snap = volumes.snapshot("a", "a-before")
    dev = volumes.attach("a").device
    assert dev is not None
    write_direct(dev, 0, PATTERN)
    write_direct(dev, 5 << 20, PATTERN)
    volumes.detach("a")
    image_file = disks.store.backend(disks.image.backend).path(disks.image.locator)
    assert sha256_file(image_file) == disks.digest
    for ref in ("a-before", "b", disks.image.name):
        other = volumes.attach(ref).device
        assert other is not None
        assert sha256_file(other, IMAGE_SIZE) == disks.digest, ref
        volumes.detach(ref)
    dev = volumes.attach("a").device
    assert dev is not None
    assert read_at(dev, 0, 4096) == PATTERN
    assert read_at(dev, 5 << 20, 4096) == PATTERN
    volumes.detach("a")
    assert disks.store.images.show(snap.id).mode == "ro"


def test_snapshots_and_images_attach_read_only(denv: StoreEnv, disks: Disks) -> None:
    volumes = disks.store.volumes
    disks.volume("v")
    volumes.snapshot("v", "v-snap")
    for ref in ("v-snap", disks.image.name):
        att = volumes.attach(ref)
        assert att.mode == "ro" and att.device is not None
        assert loop.is_readonly(att.device)
        with pytest.raises(OSError) as exc:
            write_direct(att.device, 0, PATTERN)  # refused at open or at write, depending on the kernel
        assert exc.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
        assert sha256_file(att.device, IMAGE_SIZE) == disks.digest
        with pytest.raises(InUse, match="attached ro"):
            volumes.attach(ref, userspace=True)
        volumes.detach(ref)
        with pytest.raises(PermissionDenied, match="read-only"):
            volumes.attach(ref, readonly=False)
    att = volumes.attach("v", readonly=True)
    assert att.mode == "ro" and att.device is not None and loop.is_readonly(att.device)
    volumes.detach("v")


def test_userspace_attach_gives_a_qemu_uri(denv: StoreEnv, disks: Disks, tmp_path: Path) -> None:
    need_tools("qemu-io")
    volumes = disks.store.volumes
    disks.volume("u")
    att = volumes.attach("u", userspace=True)
    assert att.device is None and att.uri is not None
    if denv.backend == "qcow2":
        assert att.kind == "nbd" and att.uri.startswith("nbd:unix:/")
        assert len(att.uri.removeprefix("nbd:unix:")) < 108
    else:
        assert att.kind == "file" and os.path.isfile(att.uri)
    assert volumes.attach("u", userspace=True) == att
    copy = tmp_path / "copy.raw"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", att.uri, str(copy)], check=True)
    assert sha256_file(copy) == disks.digest
    subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 64k", att.uri], check=True)
    with pytest.raises(InUse, match="userspace"):
        volumes.attach("u")
    volumes.detach("u")
    dev = volumes.attach("u").device
    assert dev is not None
    assert read_at(dev, 1 << 20, 65536) == b"\x5a" * 65536
    volumes.detach("u")


def test_missing_resources_give_clear_errors(denv: StoreEnv) -> None:
    store = denv.open()
    with pytest.raises(NotFound, match="'nope' not found"):
        store.volumes.attach("nope")
    result = denv.cli("volume", "attach", "nope", check=False)
    assert result.returncode == 1
    assert b"not found" in result.stderr.splitlines()[-1]
    assert not leftovers(denv)


def test_detach_and_delete_refused_while_in_use(denv: StoreEnv, disks: Disks, tmp_path: Path) -> None:
    volumes = disks.store.volumes
    disks.volume("busy")
    dev = volumes.attach("busy").device
    assert dev is not None
    subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", dev, str(mnt)], check=True)
    try:
        with pytest.raises(InUse, match="in use"):
            volumes.detach("busy")
        result = denv.cli("volume", "detach", "busy", check=False)
        assert result.returncode == 1 and b"in use" in result.stderr
        with pytest.raises(InUse, match="detach it to delete it"):
            volumes.delete("busy")
        (mnt / "hello").write_text("still works")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    volumes.detach("busy")
    volumes.delete("busy")


def test_cli_prints_device_and_json(denv: StoreEnv, disks: Disks) -> None:
    disks.volume("cli1")
    out = denv.cli("volume", "attach", "cli1").stdout.decode().splitlines()
    assert len(out) == 1 and out[0].startswith("/dev/loop")
    data = json.loads(denv.cli("-o", "json", "volume", "attach", "cli1").stdout)
    assert data["device"] == out[0] and data["uri"] is None
    assert f"<source dev='{out[0]}'/>" in data["libvirt_xml"]
    assert denv.cli("volume", "detach", "cli1").stdout.decode().strip() == "detached cli1"
    data = denv.json("volume", "attach", "cli1", "--userspace")
    assert data["device"] is None and data["uri"]
    denv.cli("volume", "detach", "cli1")


def test_local_disk_detaches_only_what_it_attached(denv: StoreEnv, disks: Disks) -> None:
    volumes = disks.store.volumes
    vid = disks.volume("ld")
    with local_disk(disks.store, vid) as path:
        assert sha256_file(path, IMAGE_SIZE) == disks.digest
        if denv.backend == "reflink":
            assert path.endswith(".raw")  # the raw file itself: nothing to set up
        else:
            assert path.startswith("/dev/loop") and disks.store.datapath.attachment(vid) is not None
    assert disks.store.datapath.attachment(vid) is None
    att = volumes.attach("ld")
    assert att.device is not None
    with local_disk(disks.store, "ld") as path:
        if denv.backend == "reflink":  # the file (its sector size is the guest's), then synced to the device
            assert path.endswith(".raw")
            with open(path, "r+b") as f:
                f.write(b"written-through-the-file")
        else:
            assert path == att.device
    if denv.backend == "reflink":
        with open(att.device, "rb") as dev:
            assert dev.read(24) == b"written-through-the-file"
    assert disks.store.datapath.attachment(vid) == att
    with pytest.raises(PermissionDenied), local_disk(disks.store, disks.image.id):
        pass
    volumes.detach("ld")


def test_attached_snapshot_and_object_cannot_be_deleted(denv: StoreEnv) -> None:
    store = denv.open()
    store.volumes.create("v", size=1 << 20)
    store.volumes.snapshot("v", "s")
    store.images.unregister("s")  # a plain object again: snapshots/s
    store.volumes.attach("snapshots/s")
    with pytest.raises(InUse, match="detach it to delete it"):
        store.objects.delete("snapshots/s")
    store.images.register("snapshots/s", "s-image")
    with pytest.raises(InUse, match="detach it to delete it"):
        store.images.delete("s-image")
    store.volumes.detach("snapshots/s")
    store.images.delete("s-image")
    assert store.fsck.run().clean
