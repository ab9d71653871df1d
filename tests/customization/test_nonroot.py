"""ext4 needs no root: the engine runs as an unprivileged user (uid 65534), dirty journal included."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from customization import crypt
from tests.customization import verify
from tests.customization.conftest import MakeImage
from tests.helpers import need_tools

NOBODY = 65534
SCRIPT = """
import json, sys
from customization.engine import customize
from customization.params import InstanceParams, Secret
params = InstanceParams(hostname="nobody-vm", password=Secret(sys.stdin.read()), ssh_keys=(sys.argv[2],))
report = customize(sys.argv[1], {"USERS": "root user"}, params, grow_to=2 << 30)
print(json.dumps(report.to_dict()))
"""


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="atoll-nobody-"))
    os.chmod(path, 0o755)
    os.chown(path, NOBODY, NOBODY)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.mark.parametrize(("table", "dirty"), [("gpt", False), ("mbr", False), ("gpt", True)])
def test_customize_as_nobody(
    make_image: MakeImage, ssh_keypair: tuple[Path, str], nobody_dir: Path, table: str, dirty: bool
) -> None:
    need_tools("setpriv")
    info = make_image(table=table, dirty=dirty)
    disk = nobody_dir / "disk.img"
    shutil.move(info.path, disk)
    os.chown(disk, NOBODY, NOBODY)
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
            sys.executable, "-c", SCRIPT, str(disk), ssh_keypair[1]]  # fmt: skip
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(Path(__file__).parents[2]),
        "TMPDIR": str(nobody_dir),
    }
    proc = subprocess.run(argv, input="nobody-pw", capture_output=True, text=True, env=env, cwd=nobody_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["ok"] and report["facts"]["access"] == "debugfs"
    assert {t["name"] for t in report["tasks"] if t["status"] == "ran"} >= {
        "FixPartitionTable", "FilesystemResize", "AssignHostname", "ChangePassword", "InjectSSHKeys",
        "DeleteSSHKeys", "ChangeMachineId",
    }  # fmt: skip
    assert disk.stat().st_size == 2 << 30
    verify.assert_table_clean(disk)
    verify.assert_fs_clean(disk, 1, "ext4")
    verify.assert_fills_partition(disk, 1, "ext4")
    with verify.guest_root(disk, 1, "ext4") as root:
        assert (root / "etc/hostname").read_text() == "nobody-vm\n"
        st = (root / "home/user/.ssh/authorized_keys").stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 1000, 0o600)
        shadow = (root / "etc/shadow").read_text().splitlines()
        assert crypt.verify_password("nobody-pw", shadow[0].split(":")[1])
        if dirty:
            assert (root / "etc/journaled").read_text() == "written before the crash\n"
