"""A real guest under the tests' libvirtd (TCG): it boots from an Atoll volume cloned and customized from
the bootable test image, gets a second volume hot-plugged, writes it, lets it be unplugged, and its bytes
are in the volume. On qcow2 the boot disk is ``--direct`` (QEMU opens the chain) and grows and snapshots
live through libvirt while the guest runs; on reflink it is the raw file."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from customization.params import InstanceParams
from provider.datapath.domains import Libvirt
from provider.errors import InUse
from provider.services import Store
from provider.services.local_disk import local_disk
from tests.conftest import StoreEnv
from tests.customization import qemu
from tests.customization.conftest import MakeImage, make_image, ssh_keypair
from tests.datapath.conftest import read_at
from tests.datapath.test_domains import libvirt_env
from tests.helpers import need_tools
from tests.images import build

__all__ = ["make_image", "ssh_keypair"]  # fixtures shared with the customization tests

# One vCPU: Debian 12's QEMU 7.2 under multi-threaded TCG once segfaulted in a vCPU thread while the
# guest answered a virtio-blk hot-unplug (libvirt: "End of file from qemu monitor"); with one vCPU
# there is one TCG thread.
GUEST = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>root=/dev/vda1 rw console=ttyS0 panic=-1</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <cpu mode='maximum'/>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=atollnet,hostfwd=tcp:127.0.0.1:{port}-:22'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=atollnet,bus=pci.0,addr=0x1e'/>
  </qemu:commandline>
</domain>
"""
MiB = 1 << 20
# TCG on a 2-core machine shared with other jobs: a minimal Debian took ~7 minutes to reach login at a
# load average of 20 (~40 s when quiet).
BOOT_TIMEOUT = 900.0
PATTERN = b"atoll-hotplug\n"


def _boot_volume(store: Store, make_image: MakeImage, public_key: str, hostname: str) -> build.ImageInfo:
    """The bootable test image in the store, and volume ``vm`` cloned from it and customized."""
    info = make_image("boot", "gpt", "ext4", size=1536 * MiB)
    with open(info.path, "rb") as f:
        obj = store.objects.upload("images/boot.raw", f)
    props = {"OSFAMILY": "linux", "ROOT_PARTITION": "1", "USERS": "root"}
    store.images.register(obj.id, name="boot", properties=props)
    store.volumes.create("vm", size=2048 * MiB, source="boot")
    store.customize.run("vm", InstanceParams(hostname=hostname, ssh_keys=(public_key,)))
    return info


def _wait_login(guest: qemu.Guest, hostname: str, dom: Any) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while b"%s login:" % hostname.encode() not in guest.console.read_bytes():
        assert dom.isActive(), f"the guest stopped:\n{guest.console.read_text(errors='replace')[-3000:]}"
        assert time.monotonic() < deadline, guest.console.read_text(errors="replace")[-3000:]
        time.sleep(1)


def _debugfs_cat(store: Store, ref: str, offset: int, path: str) -> str:
    with local_disk(store, ref, writable=False) as disk:
        out = subprocess.run(["debugfs", "-R", f"cat {path}", f"{disk}?offset={offset}"],
                             capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout


@pytest.mark.slow
def test_guest_boots_from_a_volume_and_takes_a_hotplugged_one(
    denv: StoreEnv,
    libvirt_uri: str,
    make_image: MakeImage,
    ssh_keypair: tuple[Path, str],
    tmp_path: Path,
) -> None:
    need_tools("qemu-system-x86_64", "debugfs")
    store = libvirt_env(denv, libvirt_uri, detach_timeout=120).open()
    direct = store.backend().name == "qcow2"
    hostname = f"atoll-lv-{uuid.uuid4().hex[:6]}"
    info = _boot_volume(store, make_image, ssh_keypair[1], hostname)
    offset = info.offset
    kernel, initrd = qemu.extract_kernel(Path(info.path), offset, tmp_path)
    guest = qemu.Guest(tmp_path / "console.log", qemu._free_port(), 0.0)
    xml = GUEST.format(name=f"vm-{uuid.uuid4().hex[:8]}", kernel=kernel, initrd=initrd,
                       console=guest.console, port=guest.port)  # fmt: skip
    lv = Libvirt(libvirt_uri)
    with lv.connect() as conn:
        dom = conn.defineXML(xml)
        try:
            boot = store.domains.attach("vm", dom.name(), target="vda", config=True, direct=direct)
            assert boot.direct == direct and boot.target == "vda"
            dom.create()
            _wait_login(guest, hostname, dom)
            assert qemu.ssh(guest, ssh_keypair[0], "hostname").strip() == hostname
            _hotplug_write_unplug(store, dom, guest, ssh_keypair[0])
            if direct:
                _live_grow_and_snapshot(store, guest, ssh_keypair[0], offset)
            _kill_while_writing(store, dom, guest, ssh_keypair[0])
        finally:
            if dom.isActive():
                dom.destroy()
            store.domains.detach("vm", dom.name())
            dom.undefine()
    assert store.datapath.attachment(store.volumes.get("vm").id) is None


def _hotplug_write_unplug(store: Store, dom: Any, guest: qemu.Guest, key: Path) -> None:
    store.volumes.create("scratch", size=64 * MiB)
    att = store.domains.attach("scratch", dom.name())
    assert att.target == "vdb"
    lsblk = qemu.ssh(guest, key, "udevadm settle; lsblk -bdno NAME,SIZE /dev/vdb")
    assert lsblk.split() == ["vdb", str(64 * MiB)]
    data = (PATTERN * (MiB // len(PATTERN) + 1))[:MiB]
    qemu.ssh(guest, key, "dd of=/dev/vdb bs=1M seek=3 count=1 iflag=fullblock oflag=direct conv=fsync", data)
    with pytest.raises(InUse, match="plugged into libvirt domain"):
        store.volumes.detach("scratch")  # the guest still has it: its data path stays
    assert (
        qemu.ssh(guest, key, "dd if=/dev/vdb bs=1M skip=3 count=1 iflag=direct status=none | sha256sum")[:64]
        == hashlib.sha256(data).hexdigest()
    )
    store.domains.detach("scratch", dom.name())  # the guest answers the unplug request
    assert "vdb" not in qemu.ssh(guest, key, "lsblk -dno NAME")
    assert store.datapath.attachment(store.volumes.get("scratch").id) is None
    with local_disk(store, "scratch", writable=False) as disk:
        assert read_at(disk, 3 * MiB, MiB) == data


def _live_grow_and_snapshot(store: Store, guest: qemu.Guest, key: Path, offset: int) -> None:
    """--direct: grow and snapshot go through libvirt while the guest runs and writes."""
    store.volumes.grow("vm", 3072 * MiB)
    assert qemu.ssh(guest, key, "lsblk -bdno SIZE /dev/vda").strip() == str(3072 * MiB)
    qemu.ssh(guest, key, "echo before > /root/marker-a && sync")
    store.volumes.snapshot("vm", "vm-snap")
    qemu.ssh(guest, key, "echo after > /root/marker-b && sync")
    store.volumes.create("from-snap", source="vm-snap")
    assert _debugfs_cat(store, "from-snap", offset, "/root/marker-a") == "before\n"
    assert _debugfs_cat(store, "from-snap", offset, "/root/marker-b") == ""


WRITER = (
    "mkdir -p /mnt/d && mount /dev/{dev} /mnt/d || exit 1; "
    "setsid sh -c 'i=0; while :; do dd if=/dev/urandom of=/mnt/d/f$((i % 40)) bs=64k count=16 conv=fsync "
    "status=none; i=$((i + 1)); done' </dev/null >/dev/null 2>&1 & "
    "sleep 3; ls /mnt/d | wc -l"
)


def _kill_while_writing(store: Store, dom: Any, guest: qemu.Guest, key: Path) -> None:
    """kill -9 of QEMU while the guest writes an ext4 volume: it attaches again and is clean after the
    journal is replayed."""
    store.volumes.create("data", size=256 * MiB)
    with local_disk(store, "data", writable=True) as disk:
        subprocess.run(["mkfs.ext4", "-q", "-F", disk], check=True)
    att = store.domains.attach("data", dom.name())
    assert int(qemu.ssh(guest, key, WRITER.format(dev=att.target))) > 0
    pids = [p for p in _qemu_pids() if f"guest={dom.name()},".encode() in _cmdline(p)]
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while dom.isActive():
        assert time.monotonic() < deadline, "libvirt did not notice QEMU die"
        time.sleep(0.2)
    store.domains.detach("data", dom.name())  # QEMU is gone: only the data path is released
    with local_disk(store, "data", writable=True) as disk:  # attaches again
        replay = subprocess.run(["e2fsck", "-p", disk], capture_output=True, text=True)
        assert replay.returncode in (0, 1), replay.stdout + replay.stderr  # 1: the journal was replayed
        clean = subprocess.run(["e2fsck", "-fn", disk], capture_output=True, text=True)
        assert clean.returncode == 0, clean.stdout + clean.stderr


def _qemu_pids() -> list[int]:
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and b"qemu-system" in _cmdline(int(p.name))
    ]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
