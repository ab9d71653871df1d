"""Data path fixtures: stores on both file backends with a leak check after every test (loop devices,
mounts, daemons, sockets), disk helpers, and a private libvirtd for the libvirt tests."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from provider import config as config_mod
from provider.datapath import loop
from provider.datapath.daemon import DaemonDir
from provider.datapath.domains import Libvirt
from provider.services import Store
from tests.conftest import FILE_BACKENDS, StoreEnv, write_disk
from tests.datapath import libvirtd
from tests.helpers import need, need_root, need_tools

IMAGE_SIZE = 32 << 20


def make_env(backend: str, path: Path, **store_keys: Any) -> StoreEnv:
    path.mkdir(parents=True, exist_ok=True)
    raw = {
        "store": {"backend": backend, "path": str(path), **store_keys},
        "auth": {"admins": ["root", "admin"]},
    }
    config_path = path / "atoll.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    return StoreEnv(config_path, config_mod.load(config_path), backend)


def _store_path(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    if backend == "reflink":
        mnt: Path = request.getfixturevalue("xfs_mount")
        return mnt / f"dp-{uuid.uuid4().hex[:12]}"
    return tmp_path / "store"


def leftovers(env: StoreEnv) -> list[str]:
    """Everything of this store's data path still on the host: loop devices, mounts, daemons, sockets."""
    root = str(env.config.store.path)
    found = []
    for entry in sorted(Path("/sys/block").glob("loop*")):
        backing = loop.backing_file(entry.name)
        if backing and backing.startswith(root):
            found.append(f"loop device /dev/{entry.name} on {backing}")
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if line.split()[4].startswith(root)]
    for pid in _daemons(root):
        found.append(f"qemu-storage-daemon {pid}")
    run_dir = env.config.run_dir
    if run_dir.exists():
        found += [f"state {p}" for p in run_dir.iterdir()]
    store = Store(env.config)
    if store.catalog.version():
        with store.catalog.read() as conn:
            rids = [r for (r,) in conn.exec_driver_sql("SELECT id FROM resources")]
        for rid in rids:
            sockets = DaemonDir.for_resource(run_dir, rid).sockets
            if sockets.exists():
                found.append(f"socket dir {sockets}")
    return found


def _daemons(root: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-storage-daemon" in cmdline.split(b"\0")[0] and root.encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def force_clean(env: StoreEnv) -> None:
    """After a failed test: release what it left, so the next tests start clean."""
    root = str(env.config.store.path)
    for pid in _daemons(root):
        os.kill(pid, signal.SIGKILL)
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if line.split()[4].startswith(root)]
    for entry in Path("/sys/block").glob("loop*"):
        backing = loop.backing_file(entry.name)
        if backing and backing.startswith(root):
            subprocess.run(["losetup", "-d", f"/dev/{entry.name}"], check=False)
    for mnt in mounts:
        subprocess.run(["umount", "-l", mnt], check=False)


@pytest.fixture
def checked() -> Iterator[list[StoreEnv]]:
    """Stores registered here are checked for leaks when the test ends."""
    envs: list[StoreEnv] = []
    yield envs
    problems = []
    for env in envs:
        left = leftovers(env)
        if left:
            force_clean(env)
            problems += left
    assert not problems, f"the data path leaked: {problems}"


def _need_datapath() -> None:
    need_root()
    need_tools("losetup", "qemu-img", "qemu-storage-daemon", "mkfs.ext4")
    need(os.path.exists("/dev/fuse"), "needs /dev/fuse")


@pytest.fixture(params=FILE_BACKENDS)
def denv(request: pytest.FixtureRequest, tmp_path: Path, checked: list[StoreEnv]) -> StoreEnv:
    """A store on each file backend (reflink on a loop-mounted XFS), leak-checked after the test."""
    _need_datapath()
    env = make_env(request.param, _store_path(request.param, tmp_path, request))
    checked.append(env)
    return env


@pytest.fixture
def qenv(request: pytest.FixtureRequest, tmp_path: Path, checked: list[StoreEnv]) -> StoreEnv:
    """A qcow2 store (the daemon path), leak-checked."""
    _need_datapath()
    env = make_env("qcow2", _store_path("qcow2", tmp_path, request))
    checked.append(env)
    return env


class Disks:
    """An image registered in a store, and volumes cloned from it."""

    def __init__(self, store: Store, tmp_path: Path) -> None:
        self.store = store
        self.raw = write_disk(tmp_path / f"img-{uuid.uuid4().hex[:6]}.raw", IMAGE_SIZE)
        self.digest = sha256_file(self.raw)
        with open(self.raw, "rb") as f:
            obj = store.objects.upload(f"images/{self.raw.name}", f)
        self.image = store.images.register(obj.id, name=f"img-{uuid.uuid4().hex[:6]}")

    def volume(self, name: str, size: int = IMAGE_SIZE) -> str:
        return self.store.volumes.create(name, size=size, source=self.image.id).id


@pytest.fixture
def disks(denv: StoreEnv, tmp_path: Path) -> Disks:
    return Disks(denv.open(), tmp_path)


@pytest.fixture
def qdisks(qenv: StoreEnv, tmp_path: Path) -> Disks:
    return Disks(qenv.open(), tmp_path)


def sha256_file(path: str | Path, length: int | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = length
        while remaining is None or remaining > 0:
            chunk = f.read(1 << 20 if remaining is None else min(1 << 20, remaining))
            if not chunk:
                break
            digest.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return digest.hexdigest()


def write_direct(dev: str, offset: int, data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` (a multiple of 4 KiB) at ``offset`` with O_DIRECT (and O_DSYNC: acknowledged =
    durable, as a guest's flushed write)."""
    import mmap

    buf = mmap.mmap(-1, len(data))
    buf.write(data)
    flags = os.O_WRONLY | os.O_DIRECT | (os.O_DSYNC if sync else 0)
    fd = os.open(dev, flags)
    try:
        assert os.pwritev(fd, [buf], offset) == len(data)
    finally:
        os.close(fd)
        buf.close()


def read_at(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        return f.read(length)


@pytest.fixture(scope="session")
def libvirt_uri(tmp_path_factory: pytest.TempPathFactory, xfs_mount: Path) -> Iterator[str]:
    """A libvirtd of the tests' own (private config, state and socket; QEMU driver, TCG guests).

    Its mount namespace is a copy made at start: the XFS of the reflink stores is mounted first.
    """
    need_root()
    need_tools("libvirtd", "unshare", "qemu-system-x86_64")
    with libvirtd.running(tmp_path_factory.mktemp("libvirtd")) as daemon:
        need(daemon.uri is not None, f"libvirtd did not start: {daemon.error}")
        assert daemon.uri is not None
        try:
            yield daemon.uri
        finally:
            libvirtd.destroy_domains(daemon.uri)


BARE = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/><apic/></features>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
"""


@pytest.fixture
def bare_domain(libvirt_uri: str) -> Iterator[Any]:
    """A running transient domain without an OS (SeaBIOS finds nothing to boot, no guest answers an
    unplug); destroyed at the end."""
    need(
        importlib.util.find_spec("libvirt") is not None, "needs python3-libvirt (run scripts/install-deps.sh)"
    )
    lv = Libvirt(libvirt_uri)
    with lv.connect() as conn:
        dom = conn.createXML(BARE.format(name=f"bare-{uuid.uuid4().hex[:8]}"), 0)
        try:
            yield dom
        finally:
            with contextlib.suppress(lv.lv.libvirtError):  # a transient domain vanishes when stopped
                dom.destroy()
