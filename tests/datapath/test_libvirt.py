"""libvirt ``<disk>`` XML: every variant validates against libvirt's schema, and a real TCG domain runs
on each attachment kind of each backend, seeing the volume's capacity (libvirtd of the tests' own)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from provider.config import LibvirtConfig
from provider.datapath.libvirt import disk_xml
from provider.errors import BadConfiguration, InUse, InvalidInput
from provider.model import Attachment
from tests.conftest import StoreEnv
from tests.datapath.conftest import IMAGE_SIZE, Disks
from tests.helpers import need, need_tools

DOMAIN = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
{disk}  </devices>
</domain>
"""


def _att(kind: str, mode: str = "rw", **kw: str | None) -> Attachment:
    return Attachment("r1", mode, "kernelspace", kind, kw.get("device"), kw.get("uri"), "h")  # type: ignore[arg-type]


VARIANTS = [
    pytest.param(_att("block", device="/dev/loop3"), "<source dev='/dev/loop3'/>", id="block"),
    pytest.param(_att("block", "ro", device="/dev/loop4"), "<readonly/>", id="block-ro"),
    pytest.param(_att("file", uri="/srv/a&b.raw"), "file='/srv/a&amp;b.raw'", id="file"),
    pytest.param(
        _att("nbd", uri="nbd:unix:/var/lib/atoll/run/x/nbd.sock"),
        "<host transport='unix' socket='/var/lib/atoll/run/x/nbd.sock'/>",
        id="nbd",
    ),
    pytest.param(
        _att("rbd", "ro", uri="rbd:atoll/vol-1@snap:id=ganeti:mon_host=10.0.0.1\\:6789\\;10.0.0.2"),
        "name='atoll/vol-1@snap'",
        id="rbd",
    ),
]


def validate(xml: str, path: Path) -> None:
    path.write_text(xml)
    result = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + xml


@pytest.mark.parametrize(("att", "expect"), VARIANTS)
def test_disk_variants_validate(att: Attachment, expect: str, tmp_path: Path) -> None:
    need_tools("virt-xml-validate", "xmllint")
    xml = disk_xml(att, LibvirtConfig(), target="vdb")
    assert expect in xml and "<target dev='vdb' bus='virtio'/>" in xml
    assert ("<readonly/>" in xml) == (att.mode == "ro")
    validate(DOMAIN.format(name="v", disk=xml), tmp_path / "domain.xml")


def test_driver_options_come_from_config() -> None:
    xml = disk_xml(_att("block", device="/dev/loop1"), LibvirtConfig(cache="directsync", io="io_uring"))
    assert "cache='directsync' io='io_uring' discard='unmap'" in xml
    with pytest.raises(BadConfiguration, match=r"libvirt\.cache"):
        disk_xml(_att("block", device="/dev/loop1"), LibvirtConfig(cache="fast"))
    with pytest.raises(BadConfiguration, match="io native needs"):
        disk_xml(_att("block", device="/dev/loop1"), LibvirtConfig(cache="writeback"))
    with pytest.raises(InvalidInput, match="target"):
        disk_xml(_att("block", device="/dev/loop1"), LibvirtConfig(), target="vda1")


def test_domains_run_on_every_attachment(
    denv: StoreEnv, disks: Disks, libvirt_uri: str, tmp_path: Path
) -> None:
    need_tools("virt-xml-validate")
    try:
        import libvirt
    except ImportError:
        need(False, "needs python3-libvirt (run scripts/install-deps.sh)")
    volumes = disks.store.volumes
    conn = libvirt.open(libvirt_uri)
    try:
        for userspace in (False, True):
            name = f"vm-{uuid.uuid4().hex[:8]}"
            disks.volume(name)
            att = volumes.attach(name, userspace=userspace)
            xml = DOMAIN.format(name=name, disk=disk_xml(att, denv.config.libvirt))
            validate(xml, tmp_path / f"{name}.xml")
            dom = conn.defineXML(xml)
            try:
                dom.create()
                assert dom.isActive()
                assert dom.blockInfo("vda")[0] == IMAGE_SIZE
                if att.kind != "file":  # QEMU holds the device or is an NBD client: detach refuses
                    with pytest.raises(InUse):
                        volumes.detach(name)
            finally:
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            volumes.detach(name)
    finally:
        conn.close()
