"""End to end: a debootstrap image customized by the engine boots under QEMU with the customizations."""

from __future__ import annotations

from pathlib import Path

import pytest

from customization.engine import customize
from customization.params import InstanceParams, Secret
from tests.customization import qemu, verify
from tests.customization.conftest import MakeImage
from tests.helpers import need_tools

PASSWORD = "c0rrect horse battery"
GUEST_SCRIPT = r"""
echo "host=$(hostname)"
echo "rootfs=$(findmnt -bno SIZE /)"
echo "ssh=$(systemctl is-active ssh)"
echo "machine_id=$(cat /etc/machine-id)"
perl -e '$pw = <STDIN>; ($h) = (split /:/, `grep ^root: /etc/shadow`)[1];
         print "crypt=", (crypt($pw, $h) eq $h ? "verified" : "mismatch"), "\n"'
"""


def _facts(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.mark.slow
@pytest.mark.parametrize("table", ["gpt", "mbr"])
def test_customized_debootstrap_image_boots(
    make_image: MakeImage, ssh_keypair: tuple[Path, str], table: str
) -> None:
    need_tools("qemu-system-x86_64")
    private, public = ssh_keypair
    info = make_image("boot", table, "ext4", size=1536 << 20)
    disk = Path(info.path)
    params = InstanceParams(hostname="atoll-vm1", password=Secret(PASSWORD), ssh_keys=(public,))
    props = {"OSFAMILY": "linux", "ROOT_PARTITION": str(info.root_partition), "USERS": "root"}
    report = customize(disk, props, params, grow_to=3 << 30)
    assert report.ok, report.to_dict()
    with verify.guest_root(disk, info.root_partition, "ext4") as root:
        new_key = (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[1]
        new_id = (root / "etc/machine-id").read_text().strip()
    offset, size = verify.partition(disk, info.root_partition)
    with qemu.booted(disk, offset, info.root_partition, "atoll-vm1") as guest:
        facts = _facts(qemu.ssh(guest, private, GUEST_SCRIPT, stdin=PASSWORD.encode()))
        offered = qemu.host_key(guest)
    assert facts["host"] == "atoll-vm1"
    assert facts["ssh"] == "active"
    assert facts["crypt"] == "verified"
    assert facts["machine_id"] == new_id and len(new_id) == 32
    assert int(facts["rootfs"]) > size - (200 << 20), facts  # the grown filesystem, seen by the guest
    assert size > (3 << 30) - (4 << 20)
    assert offered == new_key  # sshd serves the key the engine generated
