"""``atoll volume reimage``: a volume becomes a fresh thin clone of what it was cloned from again — its
data discarded, no data copied, its id, size and snapshots kept — and the cases it refuses say why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provider.errors import CapabilityNotSupported, InUse, InvalidInput
from provider.services import Store
from provider.services.local_disk import local_disk
from tests.conftest import StoreEnv
from tests.helpers import need_root
from tests.store.test_services import read_all, upload

MiB = 1 << 20


def _write(store: Store, ref: str, offset: int, data: bytes) -> None:
    with local_disk(store, ref, writable=True) as dev, open(dev, "r+b") as f:
        f.seek(offset)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _base(store: Store, disk: Path) -> None:
    upload(store, "images/base.raw", disk)
    store.images.register("images/base.raw", "base")


def _allocated(store: Store, ref: str) -> int:
    res = store.volumes.show(ref)
    return store.backend(res.backend).allocated_bytes(res.locator)


def test_reimage_discards_the_data_and_keeps_the_snapshots(env: StoreEnv, disk: Path) -> None:
    need_root()
    store = env.open()
    _base(store, disk)
    image = disk.read_bytes()
    vol = store.volumes.create("v", source="base", size=64 * MiB)  # larger than the image
    _write(store, "v", 0, b"before the snapshot".ljust(4096, b"!"))
    store.volumes.snapshot("v", "s")
    _write(store, "v", 40 * MiB, os.urandom(8 * MiB))  # past the image's end
    assert _allocated(store, "v") >= 8 * MiB

    shown = env.json("volume", "reimage", "v")
    assert shown["id"] == vol.id and shown["size"] == 64 * MiB
    data = read_all(store, "v")
    assert data[: len(image)] == image and data[len(image) :] == bytes(64 * MiB - len(image))
    assert _allocated(store, "v") < 2 * MiB  # a thin clone again: nothing was copied
    assert read_all(store, "s").startswith(b"before the snapshot")  # the snapshot keeps its data
    assert store.fsck.run().findings == []
    assert env.json("volume", "reimage", "v")["id"] == vol.id  # again: the same fresh clone
    assert read_all(store, "v")[: len(image)] == image


def test_reimage_refuses_what_it_cannot_do(env: StoreEnv, disk: Path) -> None:
    need_root()
    store = env.open()
    _base(store, disk)
    store.volumes.create("empty", size=8 * MiB)
    with pytest.raises(InvalidInput, match="created empty: there is no image to reimage it from"):
        store.volumes.reimage("empty")
    store.volumes.create("v", source="base")
    store.volumes.attach("v")
    try:
        refused = env.cli("volume", "reimage", "v", check=False)
        assert refused.returncode != 0 and b"is in use" in refused.stderr and b"detach" in refused.stderr
        with pytest.raises(InUse):
            store.volumes.reimage("v")
    finally:
        store.volumes.detach("v")
    assert store.fsck.run().findings == []


def test_rbd_volume_is_reimaged_until_a_snapshot_reads_it(rbd_env: StoreEnv, disk: Path) -> None:
    store = rbd_env.open()
    _base(store, disk)
    store.volumes.create("v", source="base")
    _write(store, "v", 0, b"x" * 4096)
    store.volumes.reimage("v")
    assert read_all(store, "v") == disk.read_bytes()
    store.volumes.snapshot("v", "s")  # an rbd snapshot lives in the volume's image
    with pytest.raises(CapabilityNotSupported, match="snapshots still read its data"):
        store.volumes.reimage("v")
