"""Guests boot from Atoll disks under Ganeti's kvm hypervisor (QEMU under TCG on the test cluster).

The bootable Debian test image is registered as an Atoll image; ``gnt-instance add -t ext
--disk 0:…,provider=atoll,origin=bootable -o atoll+default`` clones and customizes it, Ganeti starts
QEMU on the disk (the block device line of ``attach`` with access=kernelspace, the ``kvm:`` URI with
access=userspace), and the serial console shows the customized host name and lets root in with the
password given as an OS parameter. The image has no boot loader: the instance boots the image's own
kernel and initrd (hypervisor parameters kernel_path/initrd_path).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from provider.catalog import schema as t
from provider.ganeti import install
from provider.services import Resource
from tests.conftest import StoreEnv, backend_env
from tests.customization.qemu import extract_kernel
from tests.ganeti.cluster import Cluster
from tests.ganeti.serial import Console
from tests.helpers import need_tools
from tests.images import build

PREFIX = "atoll-kvm-"
PASSWORD = "kvm-Test-passw0rd"
SIZE_MIB = 2048
GROWN = ("reflink", "qcow2")  # the backends whose instance disk grow-disk grows, running and stopped
pytestmark = pytest.mark.slow


@dataclass
class KvmEnv:
    backend: str
    store_env: StoreEnv
    cluster: Cluster
    hvparams: str

    def volume(self, instance: str | None = None) -> Resource:
        """The one Ganeti disk in the store (of ``instance``, when several instances have one)."""
        (vol,) = [
            v
            for v in self.store_env.open().volumes.list()
            if v.volume
            and v.volume.ganeti.get("VOL_NAME")
            and instance in (None, v.volume.ganeti.get("instance"))
        ]
        return vol

    def add(self, name: str, access: str, *, start: bool = True) -> None:
        self.cluster.remove_instance(name)
        self.cluster.gnt(
            "gnt-instance",
            "add",
            *([] if start else ["--no-start"]),
            "--no-name-check",
            "--no-ip-check",
            "--no-nics",
            "-n",
            self.cluster.node,
            "-t",
            "ext",
            "--disk",
            f"0:size={SIZE_MIB}M,provider=atoll,origin=bootable,access={access}",
            "-o",
            "atoll+default",
            "-H",
            self.hvparams,
            "-B",
            "memory=512M",
            "--os-parameters-secret",
            f"img_passwd={PASSWORD}",
            name,
            timeout=1200,
        )


@pytest.fixture(scope="module")
def boot_image() -> build.ImageInfo:
    need_tools("debootstrap", "qemu-system-x86_64", "socat")
    _path, info = build.cached(build.ImageSpec(kind="boot", size=1536 << 20))
    return info


@pytest.fixture(scope="module", params=["reflink", "qcow2", "rbd"])
def kvm_env(
    request: pytest.FixtureRequest,
    cluster: Cluster,
    tmp_path_factory: pytest.TempPathFactory,
    boot_image: build.ImageInfo,
) -> Iterator[KvmEnv]:
    backend = request.param
    base = tmp_path_factory.mktemp(f"kvm-{backend}")
    env = backend_env(backend, request, base, "")  # reflink on the loop-mounted XFS, rbd in a namespace
    path = env.config.store.path
    changes = install.install(sys.executable, str(env.config_path))
    store = env.open()
    with open(boot_image.path, "rb") as f:
        store.objects.upload("images/bootable.raw", f)
    props = {"OSFAMILY": "linux", "ROOT_PARTITION": str(boot_image.root_partition), "USERS": "root"}
    store.images.register("images/bootable.raw", "bootable", properties=props)
    kernel, initrd = extract_kernel(Path(boot_image.path), boot_image.offset, base)
    hvparams = (
        f"kvm:kernel_path={kernel},initrd_path={initrd},root_path=/dev/vda{boot_image.root_partition},"
        "kernel_args=rw quiet systemd.show_status=false"  # little to print on a 38400 baud console
    )
    try:
        yield KvmEnv(backend, env, cluster, hvparams)
    finally:
        for name in cluster.instances():
            if name.startswith(PREFIX):
                cluster.remove_instance(name)
        for change in changes:
            if change.path.is_file():
                change.path.unlink()
                with contextlib.suppress(OSError):
                    change.path.parent.rmdir()
        for directory in (install.DEFAULT_EXTSTORAGE_DIR / "atoll", install.DEFAULT_OS_DIR / "atoll"):
            shutil.rmtree(directory, ignore_errors=True)
        subprocess.run(["rm", "-rf", str(path)], check=False)


def qemu_cmdline(name: str) -> str:
    """The command line of the instance's QEMU process (Ganeti keeps its pid)."""
    pid = Path(f"/var/run/ganeti/kvm-hypervisor/pid/{name}").read_text().strip()
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_instances_boot_from_customized_clones_through_both_access_paths(kvm_env: KvmEnv) -> None:
    """One instance whose QEMU opens the block device line (access=kernelspace) and one that opens the
    ``kvm:`` URI (access=userspace); both guests boot at the same time, one TCG vCPU on each core. On the
    file backends the first one's disk then grows twice: running, and stopped before its next boot."""
    names = {access: f"{PREFIX}{access[:4]}" for access in ("kernelspace", "userspace")}
    for access, name in names.items():
        kvm_env.add(name, access)
    store = kvm_env.store_env.open()
    vols = {access: kvm_env.volume(name) for access, name in names.items()}
    for access, name in names.items():
        _check_disk(kvm_env, name, access, vols[access])
    for access in ("userspace", "kernelspace"):
        name = names[access]
        with Console(name) as console:
            console.login(name, PASSWORD)  # the prompt carries the customized host name
            assert console.run("hostname").strip() == name
            root_kib = int(console.run("df -k --output=size / | tail -n 1").strip())
            assert root_kib > (SIZE_MIB - 200) << 10  # the root filesystem was grown to the disk
            if access == "kernelspace" and kvm_env.backend in GROWN:
                _grow_running(kvm_env, name, console)
        if access == "kernelspace" and kvm_env.backend in GROWN:
            _grow_stopped_then_boot(kvm_env, name)
        kvm_env.cluster.remove_instance(name)
    assert {v.id for v in store.volumes.list()}.isdisjoint(v.id for v in vols.values())


def _grow_running(kvm_env: KvmEnv, name: str, console: Console) -> None:
    """``gnt-instance grow-disk`` of a running instance: QEMU is told and the guest sees the new size."""
    before = int(console.run("cat /sys/block/vda/size").strip())
    assert before == (SIZE_MIB << 20) // 512
    kvm_env.cluster.gnt("gnt-instance", "grow-disk", name, "0", "512M")
    grown = str(((SIZE_MIB + 512) << 20) // 512)
    for _ in range(30):  # the guest kernel picks up virtio-blk's config change
        if console.run("cat /sys/block/vda/size").strip() == grown:
            break
        time.sleep(2)
    assert console.run("cat /sys/block/vda/size").strip() == grown
    console.run("sync")
    assert kvm_env.volume(name).size == (SIZE_MIB + 512) << 20


def _grow_stopped_then_boot(kvm_env: KvmEnv, name: str) -> None:
    """Stopped: the disk grows and the hook grows the root partition and filesystem before the next boot.
    The test image does not act on ACPI power-off, so Ganeti's default stop would wait its whole 2-minute
    shutdown timeout before the kill; stop at once instead (the guest's writes are synced and the
    customization replays the ext4 journal before it resizes)."""
    cluster = kvm_env.cluster
    cluster.gnt("gnt-instance", "stop", "--timeout=0", name)
    cluster.gnt("gnt-instance", "grow-disk", name, "0", "512M")
    cluster.gnt("gnt-instance", "start", name)
    with Console(name) as console:
        console.login(name, PASSWORD)
        root_kib = int(console.run("df -k --output=size / | tail -n 1").strip())
        assert root_kib > (SIZE_MIB + 1024 - 200) << 10
        assert console.run("cat /sys/block/vda/size").strip() == str(((SIZE_MIB + 1024) << 20) // 512)


def _check_disk(kvm_env: KvmEnv, name: str, access: str, vol: Resource) -> None:
    """``vol`` is a clone of the image, attached on the node with ``access``, and QEMU opened it so."""
    store = kvm_env.store_env.open()
    assert vol.parent == store.images.show("bootable").id and vol.size == SIZE_MIB << 20
    # recorded under the node's name (Ganeti runs in the cluster's UTS namespace, not under this host's)
    with store.catalog.read() as conn:
        (att,) = conn.execute(select(t.attachments).where(t.attachments.c.resource_id == vol.id)).all()
    assert att.host == kvm_env.cluster.node and att.access == access
    cmdline = qemu_cmdline(name)
    if access == "kernelspace":  # Ganeti's link to the block device line
        link = f"/var/run/ganeti/instance-disks/{name}:0"
        assert f"file={link}," in cmdline and os.path.realpath(link) == att.device
    else:
        assert att.uri and f"file={att.uri}," in cmdline  # Ganeti used the kvm: line


@pytest.mark.parametrize("kvm_env", ["rbd"], indirect=True)
def test_reinstall_of_an_rbd_instance_reclones_and_boots(kvm_env: KvmEnv) -> None:
    """``gnt-instance reinstall`` on rbd: a new clone of the image's snapshot takes the place of the
    disk's image (nothing copied: it allocates next to nothing before the customization), the old image
    is removed, and the guest boots customized again under its new host name."""
    name, cluster = f"{PREFIX}rein", kvm_env.cluster
    kvm_env.add(name, "kernelspace", start=False)
    store = kvm_env.store_env.open()
    before = kvm_env.volume()
    backend = store.backend(before.backend)
    cluster.gnt(
        "gnt-instance",
        "reinstall",
        "-f",
        "-O",
        "hostname=reborn",
        "--os-parameters-secret",
        f"img_passwd={PASSWORD}",
        name,
        timeout=1200,
    )
    after = kvm_env.volume()
    assert after.id == before.id and after.parent == before.parent and after.size == before.size
    assert after.locator != before.locator and not backend.exists(before.locator)
    assert backend.allocated_bytes(after.locator) < (SIZE_MIB << 20) // 4  # a clone, customized
    cluster.gnt("gnt-instance", "start", name)
    with Console(name) as console:
        console.login("reborn", PASSWORD)
        assert console.run("hostname").strip() == "reborn"
    cluster.remove_instance(name)
    assert not backend.exists(after.locator)


@pytest.mark.parametrize("kvm_env", ["reflink"], indirect=True)
def test_backup_export_then_import_gives_a_booting_instance(kvm_env: KvmEnv) -> None:
    """``gnt-backup export`` streams the disk through the OS definition's ``export``; ``gnt-backup import``
    creates an empty Atoll volume and the OS ``import`` writes the dump onto it (the zeros of the dump
    are not written: the new volume allocates about what the exported one did); the new instance boots."""
    name, copy, cluster = f"{PREFIX}exp", f"{PREFIX}imp", kvm_env.cluster
    kvm_env.add(name, "kernelspace", start=False)  # the OS create customized the disk: no boot needed
    cluster.gnt("gnt-backup", "export", "-n", cluster.node, name, timeout=1200)
    cluster.remove_instance(name)
    cluster.remove_instance(copy)
    cluster.gnt(
        "gnt-backup",
        "import",
        "-n",
        cluster.node,
        "--src-node",
        cluster.node,
        "--src-dir",
        f"/var/lib/ganeti/export/{name}",
        "--no-name-check",
        "--no-ip-check",
        "-t",
        "ext",
        "--disk",
        f"0:size={SIZE_MIB}M,provider=atoll",
        copy,
        timeout=1200,
    )
    try:
        vol = kvm_env.volume()
        assert vol.parent is None and vol.size == SIZE_MIB << 20  # an empty volume, filled by the OS import
        store = kvm_env.store_env.open()
        allocated = store.backend(vol.backend).allocated_bytes(vol.locator)
        assert allocated < (SIZE_MIB << 20) * 3 // 4, allocated
        cluster.gnt("gnt-instance", "start", copy)
        with Console(copy) as console:
            console.login(name, PASSWORD)  # the exported disk: its host name and root password
            assert console.run("hostname").strip() == name
    finally:
        cluster.gnt("gnt-backup", "remove", name, check=False)
        cluster.remove_instance(copy)
