"""Live operations through a running data path: grow, snapshot while a writer writes, a killed daemon,
bounded qcow2 chains, and data integrity under concurrent I/O. Every test is leak-checked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provider.datapath import loop
from provider.datapath.daemon import DaemonDir, pid_of
from provider.errors import InUse
from provider.services import volume_reclone
from provider.services.local_disk import local_disk
from tests.conftest import StoreEnv
from tests.datapath import writer
from tests.datapath.conftest import (
    IMAGE_SIZE,
    Disks,
    make_env,
    read_at,
    sha256_file,
    write_direct,
)
from tests.helpers import need_tools

BLOCK = 4096


def test_grow_while_attached_resizes_the_device(denv: StoreEnv, disks: Disks) -> None:
    volumes = disks.store.volumes
    disks.volume("g")
    dev = volumes.attach("g").device
    assert dev is not None and loop.size(dev) == IMAGE_SIZE
    new = 2 * IMAGE_SIZE
    denv.cli("volume", "grow", "g", "--size", str(new))
    assert loop.size(dev) == new  # the same device, no detach
    tail = b"tail".ljust(BLOCK, b"!")
    write_direct(dev, new - BLOCK, tail)
    assert read_at(dev, new - BLOCK, BLOCK) == tail
    assert volumes.show("g").size == new
    volumes.detach("g")
    dev = volumes.attach("g").device
    assert dev is not None and loop.size(dev) == new
    assert read_at(dev, new - BLOCK, BLOCK) == tail
    assert sha256_file(dev, IMAGE_SIZE) == disks.digest
    volumes.detach("g")


def test_grow_in_userspace(denv: StoreEnv, disks: Disks) -> None:
    need_tools("nbdinfo", "qemu-io")
    volumes = disks.store.volumes
    disks.volume("gu")
    att = volumes.attach("gu", userspace=True)
    assert att.uri is not None
    if denv.backend == "qcow2":
        # A connected NBD client cannot be told a new size: refused while one is connected.
        client = subprocess.Popen(
            ["qemu-io", "-f", "raw", att.uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            assert client.stdout is not None
            time.sleep(0.5)
            with pytest.raises(InUse, match="NBD client"):
                volumes.grow("gu", 2 * IMAGE_SIZE)
            with pytest.raises(InUse, match="NBD client"):
                volumes.detach("gu")
        finally:
            client.communicate(b"quit\n", timeout=30)
    volumes.grow("gu", 2 * IMAGE_SIZE)
    size = subprocess.run(
        ["qemu-img", "info", "--output=json", "-f", "raw", att.uri], capture_output=True, check=True
    ).stdout
    assert json.loads(size)["virtual-size"] == 2 * IMAGE_SIZE
    volumes.detach("gu")


def _check_blocks(data: bytes, nblocks: int, original: bytes, order: list[int]) -> int:
    """Every block of ``data`` is the original or an intact stamp, and the whole is one prefix of the
    writer's sequence; return that prefix's length (the snapshot's point in time)."""
    seen: dict[int, int] = {}
    for idx in range(nblocks):
        block = data[idx * BLOCK : (idx + 1) * BLOCK]
        stamp = writer.parse(block)  # raises on a torn block
        if stamp is None:
            assert block == original[idx * BLOCK : (idx + 1) * BLOCK], f"block {idx} is garbage"
            continue
        gen, where = stamp
        assert where == idx, f"block {idx} holds the data of block {where}"
        seen[idx] = gen
    point = max(seen.values(), default=0)
    last: dict[int, int] = {}
    for gen, idx in enumerate(order[:point], start=1):
        last[idx] = gen
    assert seen == last, "the snapshot is not one point in time of the write sequence"
    return point


def test_snapshot_while_writing_is_one_point_in_time(denv: StoreEnv, disks: Disks, tmp_path: Path) -> None:
    volumes = disks.store.volumes
    disks.volume("w")
    dev = volumes.attach("w").device
    assert dev is not None
    nblocks = 2048
    original = read_at(dev, 0, nblocks * BLOCK)
    log, stop = tmp_path / "order.json", tmp_path / "stop"
    proc = subprocess.Popen(
        [sys.executable, writer.__file__, dev, str(nblocks), str(log), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # the writer is running
        denv.cli("volume", "snapshot", "w", "w-live")
        for _ in range(3):
            proc.stdout.readline()  # and it keeps writing after the snapshot
    finally:
        stop.touch()
        proc.wait(timeout=120)
    assert proc.returncode == 0
    order = json.loads(log.read_text())
    snap = volumes.attach("w-live").device
    assert snap is not None
    point = _check_blocks(read_at(snap, 0, nblocks * BLOCK), nblocks, original, order)
    assert 0 < point < len(order)
    volumes.detach("w-live")
    assert _check_blocks(read_at(dev, 0, nblocks * BLOCK), nblocks, original, order) == len(order)
    volumes.detach("w")


def test_killed_daemon_is_restarted_and_keeps_acknowledged_writes(qenv: StoreEnv, qdisks: Disks) -> None:
    volumes = qdisks.store.volumes
    vid = qdisks.volume("k")
    dev = volumes.attach("k").device
    assert dev is not None
    blocks = {i * (1 << 20) + 8192: os.urandom(BLOCK) for i in range(8)}
    for off, data in blocks.items():
        write_direct(dev, off, data)  # O_DSYNC: acknowledged means durable
    d = DaemonDir.for_resource(qenv.config.run_dir, vid)
    pid = pid_of(d)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    while pid_of(d) is not None:
        time.sleep(0.05)
    att = volumes.attach("k")  # detects the dead daemon and brings the path up again
    assert att.device is not None and pid_of(d) not in (None, pid)
    for off, data in blocks.items():
        assert read_at(att.device, off, BLOCK) == data
    assert volumes.attach("k") == att
    volumes.detach("k")


def test_qcow2_kernel_path_survives_fio_verify(qenv: StoreEnv, qdisks: Disks) -> None:
    """Concurrent random I/O with verification through FUSE + loop (see qsd.LOOP_DIRECT_IO)."""
    need_tools("fio")
    qdisks.volume("f")
    dev = qdisks.store.volumes.attach("f").device
    assert dev is not None
    for rw, bs in (("randrw", "4k"), ("randwrite", "256k")):
        result = subprocess.run(
            ["fio", "--name=verify", f"--filename={dev}", f"--rw={rw}", f"--bs={bs}", "--iodepth=32",
             "--ioengine=libaio", "--direct=1", "--size=16M", "--verify=crc32c", "--verify_fatal=1",
             "--do_verify=1", "--verify_state_save=0"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    qdisks.store.volumes.detach("f")


@pytest.mark.parametrize("attached", [False, True], ids=["offline", "live"])
def test_qcow2_chains_stay_bounded(tmp_path: Path, checked: list[StoreEnv], attached: bool) -> None:
    need_tools("qemu-img")
    env = make_env("qcow2", tmp_path / "store", max_chain_depth=4)
    checked.append(env)
    disks = Disks(env.open(), tmp_path)
    store, volumes = disks.store, disks.store.volumes
    backend = store.backend("qcow2")
    vid = disks.volume("c")
    frozen: dict[str, str] = {}  # snapshot name -> sha256 of its file when taken
    expected: dict[str, dict[int, bytes]] = {}
    marks: dict[int, bytes] = {}
    dev = volumes.attach("c").device if attached else None
    for i in range(1, 9):
        marks[i] = f"mark {i}".encode().ljust(BLOCK, b"#")
        if attached:
            assert dev is not None
            write_direct(dev, i * (1 << 20), marks[i])
        else:
            att_dev = volumes.attach("c").device
            assert att_dev is not None
            write_direct(att_dev, i * (1 << 20), marks[i])
            volumes.detach("c")
        snap = volumes.snapshot("c", f"c{i}")
        frozen[snap.name] = sha256_file(backend.path(snap.locator))
        expected[snap.name] = dict(marks)
        vol = volumes.show(vid)
        assert backend.chain_depth(vol.locator) <= 4, f"after snapshot {i}"
        if i in (3, 4):
            store.images.delete(f"c{i - 2}")  # hidden; kept while a later snapshot reads through it
            frozen.pop(f"c{i - 2}")
    if attached:
        volumes.detach("c")
    assert sha256_file(backend.path(disks.image.locator)) == disks.digest
    for name, digest in frozen.items():
        assert sha256_file(backend.path(store.images.show(name).locator)) == digest, name
    for name, want in [*expected.items(), ("c", marks)]:
        if name in ("c1", "c2"):
            continue
        got = volumes.attach(name).device
        assert got is not None
        for i, mark in want.items():
            assert read_at(got, i * (1 << 20), BLOCK) == mark, (name, i)
        assert read_at(got, 0, 13) == disks.raw.read_bytes()[:13]
        volumes.detach(name)
    for name in frozen:
        store.images.delete(name)
    chain = {loc for loc, _ in backend.chain(volumes.show(vid).locator)}
    assert len(chain) <= 4 and disks.image.locator in chain
    assert set(backend.list_locators()) == chain, "layers nothing reads through were not collected"


@pytest.mark.parametrize("userspace", [False, True], ids=["kernelspace", "userspace"])
def test_qcow2_reclone_switches_the_running_daemon(
    qenv: StoreEnv, qdisks: Disks, tmp_path: Path, userspace: bool
) -> None:
    """A reinstall's re-clone of an attached volume: the same daemon serves a new empty top over the
    image at once (what the host cached of the old content is gone), a snapshot taken before keeps its
    data, the old top is closed and removed, and fsck is clean."""
    store = qdisks.store
    volumes = store.volumes
    vid = qdisks.volume("r")
    att = volumes.attach("r", userspace=userspace)
    if att.device is not None:
        write_direct(att.device, 8192, b"o" * BLOCK)
        volumes.snapshot("r", "before")  # live: the chain is new top -> frozen old top -> image
        write_direct(att.device, 16384, b"n" * BLOCK)
        assert read_at(att.device, 16384, BLOCK) == b"n" * BLOCK  # now in the device's page cache
    else:
        volumes.snapshot("r", "before")
    pid = pid_of(DaemonDir.for_resource(qenv.config.run_dir, vid))
    vol = volumes.show("r")
    assert vol.parent is not None
    assert volume_reclone.reclone(volumes, vol, volumes.get(vol.parent))
    now = volumes.show("r")
    backend = store.backend(now.backend)
    assert now.locator != vol.locator and not backend.path(vol.locator).exists()
    assert pid_of(DaemonDir.for_resource(qenv.config.run_dir, vid)) == pid  # switched, not restarted
    if att.device is not None:
        assert read_at(att.device, 16384, BLOCK) == read_at(str(qdisks.raw), 16384, BLOCK)
        assert sha256_file(att.device, IMAGE_SIZE) == qdisks.digest
    else:
        assert att.uri is not None
        copy = tmp_path / "served.raw"
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", att.uri, str(copy)], check=True)
        assert sha256_file(copy) == qdisks.digest
    volumes.detach("r")
    if att.device is not None:
        with local_disk(store, "before", writable=False) as snap:
            assert read_at(snap, 8192, BLOCK) == b"o" * BLOCK
    assert store.fsck.run().clean
