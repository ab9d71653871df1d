"""rbd volumes on a Ceph that requires cephx, plugged into a libvirt domain: Atoll defines the libvirt
secret of the store's Ceph user and names it in the ``<disk>``; the domain's QEMU then opens the volume
over librbd with that key. Checked through QEMU itself: its ``qemu-io`` monitor command reads the bytes
Atoll wrote and writes bytes Atoll then reads, and a wrong key in the secret keeps the next disk out.

The cluster is a second micro Ceph (scripts/micro-ceph.sh with ``ATOLL_CEPH_AUTH=cephx``); the store's
user ``client.vm`` holds only the ``rbd`` profile on the pool, its key in a keyring of its own."""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provider.datapath.domains import Libvirt
from provider.services.local_disk import local_disk
from tests import daemons
from tests.conftest import StoreEnv, make_store_env
from tests.datapath import libvirtd
from tests.datapath.test_domains import _importable, libvirt_env
from tests.helpers import need

MIB = 1 << 20
USER = "vm"


@pytest.fixture(scope="module")
def cephx_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The ceph.conf of a micro Ceph that requires cephx (client.admin's keyring named in it)."""
    need(_importable("rbd") and _importable("libvirt"), "needs python3-rbd and python3-libvirt")
    with daemons.micro_ceph(tmp_path_factory.mktemp("cephx"), auth="cephx") as cluster:
        need(cluster.ok, cluster.error)
        yield Path(cluster.exports["CEPH_CONF"])


def user_conf(cluster_conf: Path, base: Path) -> Path:
    """A ceph.conf for ``client.vm``: the cluster's, with the user's own keyring (rbd profile only)."""
    keyring = base / f"client.{USER}.keyring"
    caps = ["mon", "profile rbd", "osd", "profile rbd pool=atoll"]
    subprocess.run(
        [
            "ceph",
            "-c",
            str(cluster_conf),
            "auth",
            "get-or-create",
            f"client.{USER}",
            *caps,
            "-o",
            str(keyring),
        ],
        check=True,
        capture_output=True,
    )
    conf = base / "ceph-vm.conf"
    conf.write_text(cluster_conf.read_text() + f"\n[client.{USER}]\nkeyring = {keyring}\n")
    return conf


def qemu_io(dom: Any, log: Path, target: str, command: str) -> str:
    """Run ``command`` of qemu-io inside the domain's QEMU on the virtio disk ``target`` (through the
    device's own block backend); return what it printed (to QEMU's stdout: the domain's log)."""
    import libvirt_qemu

    alias = re.search(rf"<target dev='{target}'[^>]*/>.*?<alias name='([^']+)'/>", dom.XMLDesc(0), re.DOTALL)
    assert alias is not None
    seen = log.stat().st_size
    hmp = f'qemu-io -d /machine/peripheral/{alias.group(1)}/virtio-backend "{command}"'
    error = libvirt_qemu.qemuMonitorCommand(dom, hmp, libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
    assert not error.strip(), error
    with open(log, "rb") as f:
        f.seek(seen)
        return f.read().decode(errors="replace")


def test_rbd_volume_under_cephx_is_read_and_written_by_the_domain_through_the_secret(
    cephx_conf: Path, tmp_path: Path, libvirt_uri: str, bare_domain: Any
) -> None:
    domain = bare_domain  # no guest answers an unplug: the domain is destroyed instead
    conf = user_conf(cephx_conf, tmp_path)
    keys = {"pool": "atoll", "ceph_conf": str(conf), "user": USER}
    env: StoreEnv = libvirt_env(make_store_env("rbd", tmp_path / "store", "", store=keys), libvirt_uri)
    store = env.open()
    image = tmp_path / "image.raw"
    image.write_bytes(b"a" * (4 * MIB))
    with open(image, "rb") as f:
        store.objects.upload("images/a.raw", f)
    store.images.register("images/a.raw", "pattern")
    vol = store.volumes.create("v1", size=8 * MIB, source="pattern")

    plugged = env.json("volume", "attach", "v1", "--domain", domain.name(), "--target", "vdb")
    assert plugged["domain"] == domain.name() and plugged["access"] == "userspace"
    lv = Libvirt(libvirt_uri)
    with lv.connect() as conn:
        (secret,) = [s for s in conn.listAllSecrets(0) if s.usageID() == f"client.{USER} secret"]
        assert f"<secret type='ceph' uuid='{secret.UUIDString()}'/>" in plugged["libvirt_xml"]
        dom = conn.lookupByName(domain.name())
        assert "<auth username='vm'>" in dom.XMLDesc(0)
        log = libvirtd.domain_log(libvirt_uri, domain.name())
        read = qemu_io(
            dom, log, "vdb", "read -P 0x61 0 4M"
        )  # the clone's data, read through the image's parent
        assert "read 4194304/4194304 bytes" in read and "verification failed" not in read, read
        wrote = qemu_io(dom, log, "vdb", "write -P 0x62 4M 1M")
        assert "wrote 1048576/1048576 bytes" in wrote, wrote
        qemu_io(dom, log, "vdb", "flush")
        # QEMU uses the secret's key (it overrides the keyring the configuration names): with a wrong
        # one in the secret the next rbd disk cannot be opened
        other = subprocess.run(
            ["ceph-authtool", "--gen-print-key"], capture_output=True, text=True, check=True
        )
        secret.setValue(base64.b64decode(other.stdout.strip()))  # a well-formed key, not client.vm's
        v2 = store.volumes.create("v2", size=8 * MIB, source="pattern")
        att = store.datapath.attach(v2.id, userspace=True)
        with pytest.raises(lv.lv.libvirtError, match=r"(?i)permission denied"):
            dom.attachDeviceFlags(store.domains.render(v2, att, "vdc", conn, define_secret=False), 1)
        store.datapath.detach(v2.id)
        dom.destroy()
    assert env.cli("volume", "detach", "v1", "--domain", domain.name()).returncode == 0
    with local_disk(store, vol.id, writable=False) as disk, open(disk, "rb") as f:
        assert f.read(4 * MIB) == b"a" * (4 * MIB) and f.read(MIB) == b"b" * MIB
    assert env.cli("volume", "delete", "v1").returncode == 0
