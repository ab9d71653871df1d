"""The full Linux task set on every table x filesystem, synthetic and debootstrap trees, fully verified."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from customization import crypt
from customization.engine import customize
from customization.params import InjectedFile, InstanceParams, Secret
from customization.report import Status
from tests.customization import verify
from tests.customization.conftest import MakeImage

PASSWORD = "matrix pw 1"
CASES = [
    pytest.param(kind, table, fs, layout, id=f"{kind}-{table}-{fs}-{layout}")
    for kind in ("synthetic", "boot")
    for table in ("gpt", "mbr")
    for fs in ("ext4", "xfs", "btrfs")
    for layout in ("root",)
] + [pytest.param("synthetic", "mbr", "ext4", "logical", id="synthetic-mbr-ext4-logical"),
     pytest.param("boot", "gpt", "xfs", "esp+root", id="boot-gpt-xfs-esp_root")]  # fmt: skip


def _owner(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


@pytest.mark.parametrize(("kind", "table", "fs", "layout"), CASES)
def test_full_task_set(
    make_image: MakeImage, ssh_keypair: tuple[Path, str], kind: str, table: str, fs: str, layout: str
) -> None:
    info = make_image(kind, table, fs, layout)
    disk = Path(info.path)
    params = InstanceParams(
        hostname="matrix-vm",
        password=Secret(PASSWORD),
        ssh_keys=(ssh_keypair[1],),
        files=(InjectedFile("/etc/atoll/data.bin", bytes(range(256)), "root", "daemon", 0o640),),
    )
    report = customize(disk, {"OSFAMILY": "linux", "USERS": "root"}, params, grow_to=3 << 30)
    assert report.ok
    assert all(o.status is Status.RAN for o in report.outcomes if o.name != "AddSwap"), report.to_dict()
    number = info.root_partition
    assert verify.table(disk)["id"] == info.disk_id
    verify.assert_table_clean(disk)
    verify.assert_fs_clean(disk, number, fs)
    verify.assert_fills_partition(disk, number, fs)
    assert verify.partition(disk, number)[1] > (3 << 30) - (40 << 20)
    with verify.guest_root(disk, number, fs) as root:
        assert (root / "etc/hostname").read_text() == "matrix-vm\n"
        assert _owner(root / "etc/hostname") == (0, 0, 0o644)
        assert "127.0.1.1\tmatrix-vm" in (root / "etc/hosts").read_text().splitlines()
        hashed = next(ln for ln in (root / "etc/shadow").read_text().splitlines() if ln.startswith("root:"))
        hashed = hashed.split(":")[1]
        if kind == "boot":
            assert verify.guest_crypt_verifies(root, PASSWORD, hashed)
        else:
            assert crypt.verify_password(PASSWORD, hashed)
        assert _owner(root / "root/.ssh") == (0, 0, 0o700)
        assert _owner(root / "root/.ssh/authorized_keys") == (0, 0, 0o600)
        assert ssh_keypair[1] in (root / "root/.ssh/authorized_keys").read_text()
        keys = sorted((root / "etc/ssh").glob("ssh_host_*_key"))
        assert keys and all(b"not-a-real" not in k.read_bytes() and _owner(k) == (0, 0, 0o600) for k in keys)
        assert re.fullmatch(r"[0-9a-f]{32}\n", (root / "etc/machine-id").read_text())
        assert (root / "etc/atoll/data.bin").read_bytes() == bytes(range(256))
        assert _owner(root / "etc/atoll/data.bin") == (0, 1, 0o640)
