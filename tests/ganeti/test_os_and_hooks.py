"""The OS definition and the hooks run directly, with the environment Ganeti would give them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import write_disk
from tests.ganeti import guest
from tests.ganeti.conftest import Installed, last_line, register_image

MIB = 1 << 20
OS_ENV = {"OS_API_VERSION": "20", "OS_NAME": "atoll", "OS_VARIANT": "default", "DEBUG_LEVEL": "0"}


def test_export_then_import_streams_the_disk(installed: Installed, tmp_path: Path) -> None:
    src, dst = write_disk(tmp_path / "src", 8 * MIB), tmp_path / "dst"
    dst.write_bytes(bytes(8 * MIB))
    read_size, write_size = os.pipe()
    export = subprocess.run(
        [str(installed.os / "export")],
        env={**OS_ENV, "EXPORT_INDEX": "0", "EXPORT_DISK_PATH": str(src), "EXP_SIZE_FD": str(write_size)},
        cwd=installed.os,
        capture_output=True,
        pass_fds=(write_size,),
        check=False,
    )
    os.close(write_size)
    assert export.returncode == 0, export.stderr
    assert os.read(read_size, 100) == f"{8 * MIB}\n".encode()
    assert export.stdout == src.read_bytes()
    imported = subprocess.run(
        [str(installed.os / "import")],
        env={**OS_ENV, "IMPORT_INDEX": "0", "IMPORT_DEVICE": str(dst)},
        cwd=installed.os,
        input=export.stdout,
        capture_output=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert dst.read_bytes() == src.read_bytes()
    too_big = subprocess.run(
        [str(installed.os / "import")],
        env={**OS_ENV, "IMPORT_DISK_PATH": str(dst)},
        cwd=installed.os,
        input=export.stdout + b"x",
        capture_output=True,
        text=False,
        check=False,
    )
    assert (
        last_line(too_big.stderr.decode())
        == "atoll-os import: error: the import stream is larger than the disk (8.0 MiB)"
    )


def test_verify_and_create_refuse_bad_requests(installed: Installed, tmp_path: Path) -> None:
    bad = installed.run(installed.os, "verify", ("parameters",), **OS_ENV, OSP_IMG_ID="missing")
    assert last_line(bad.stderr) == "atoll-os verify: error: image 'missing' not found"
    old = installed.run(installed.os, "verify", ("parameters",), **{**OS_ENV, "OS_API_VERSION": "15"})
    assert "OS API version 15 is not supported" in last_line(old.stderr)
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(MIB))
    env = {**OS_ENV, "INSTANCE_NAME": "vm1", "DISK_COUNT": "1", "DISK_0_PATH": str(disk), "DISK_0_UUID": "x"}
    nothing = installed.run(installed.os, "create", **env)
    assert last_line(nothing.stderr) == (
        "atoll-os create: error: disk 0 is not an Atoll volume: give -O img_id=IMAGE to copy an image onto it"
    )


def test_create_on_a_plain_disk_copies_then_customizes(
    installed: Installed, guest_image: Path, tmp_path: Path, ssh_public_key: str
) -> None:
    register_image(installed.env, guest_image, "guest")
    disk = tmp_path / "disk"
    with open(disk, "wb") as f:
        f.truncate(guest_image.stat().st_size + 64 * MIB)
    secret = "n0t-in-any-log"
    proc = installed.run(
        installed.os,
        "create",
        **OS_ENV,
        INSTANCE_NAME="vm1.example.org",
        DISK_COUNT="1",
        DISK_0_PATH=str(disk),
        DISK_0_UUID="not-atoll",
        OSP_IMG_ID="guest",
        OSP_IMG_PASSWD=secret,
        OSP_AUTH_KEYS=ssh_public_key,
    )
    assert proc.returncode == 0, proc.stderr
    assert secret not in proc.stdout + proc.stderr
    assert "AssignHostname: ran" in proc.stderr and "installed in" in last_line(proc.stderr)
    assert guest.read_file(disk, "/etc/hostname").strip() == "vm1.example.org"
    assert ssh_public_key in guest.read_file(disk, "/root/.ssh/authorized_keys")
    guest.assert_fs_fills_partition(disk)


def test_create_customizes_only_the_disk_ganeti_hands_over(
    installed: Installed, guest_image: Path, tmp_path: Path
) -> None:
    """A volume found by DISK_0_UUID is customized only when DISK_0_PATH is its data: another disk (a
    stale or reused UUID) is refused, and neither that disk nor the volume changes."""
    store = installed.env.open()
    register_image(installed.env, guest_image, "guest")
    vol = store.volumes.create("vol-of-vm1", source="guest")
    store.volumes.set_ganeti(vol.id, {"VOL_UUID": "u-1"})
    vol_file = store.backend().path(vol.locator)
    vol_before = vol_file.read_bytes()
    other = write_disk(tmp_path / "other", 4 * MIB)
    other_before = other.read_bytes()
    env = {**OS_ENV, "INSTANCE_NAME": "vm1", "DISK_COUNT": "1", "DISK_0_UUID": "u-1", "OSP_HOSTNAME": "vm1"}
    proc = installed.run(installed.os, "create", **env, DISK_0_PATH=str(other))
    assert proc.returncode == 1
    assert last_line(proc.stderr) == (
        f"atoll-os create: error: DISK_0_PATH {other} is not volume vol-of-vm1 (not attached on this "
        "host): refusing to customize a disk Ganeti did not hand over"
    )
    assert other.read_bytes() == other_before and vol_file.read_bytes() == vol_before
    device = store.volumes.attach(vol.id).device  # what Ganeti's attach gives it
    assert device is not None
    try:
        handed = installed.run(installed.os, "create", **env, DISK_0_PATH=device)
        assert handed.returncode == 0, handed.stderr
    finally:
        store.volumes.detach(vol.id)
    assert vol_file.read_bytes() != vol_before


HOOK = {
    "GANETI_HOOKS_VERSION": "2",
    "GANETI_HOOKS_PHASE": "post",
    "GANETI_INSTANCE_NAME": "vm1",
    "GANETI_INSTANCE_DISK_COUNT": "1",
    "GANETI_INSTANCE_DISK0_PROVIDER": "atoll",
    "GANETI_INSTANCE_DISK0_ID": "vol-of-vm1",
    "GANETI_DISK": "0",
    "GANETI_INSTANCE_STATUS": "down",
}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"GANETI_HOOKS_PHASE": "pre"}, "nothing to do in the pre phase", id="pre"),
        pytest.param({"GANETI_DISK": "1"}, "disk 1 of vm1 is not an Atoll root disk", id="not-root"),
        pytest.param({"GANETI_INSTANCE_DISK0_PROVIDER": "zfs"}, "is not an Atoll root disk", id="other"),
        pytest.param(
            {"GANETI_POST_INSTANCE_STATUS": "up"}, "vm1 is running: grow its partition", id="running"
        ),
        pytest.param({"GANETI_INSTANCE_PRIMARY": "elsewhere.example"}, "not the primary node", id="node"),
    ],
)
def test_grow_hook_leaves_what_is_not_its_business(
    installed: Installed, changes: dict[str, str], message: str
) -> None:
    hooks = installed.hooks / "disk-grow-post.d"
    proc = installed.run(hooks, "60-atoll-grow-root", **{**HOOK, "GANETI_HOOKS_PATH": "disk-grow", **changes})
    assert proc.returncode == 0, proc.stderr
    assert message in proc.stderr


def test_rename_and_remove_hooks_keep_the_catalog_in_step(installed: Installed) -> None:
    store = installed.env.open()
    store.volumes.create("vol-of-vm1", size=MIB, ganeti={"VOL_NAME": "vol-of-vm1", "instance": "vm1"})
    env = {**HOOK, "GANETI_INSTANCE_NEW_NAME": "vm2"}
    assert installed.run(installed.hooks / "instance-rename-post.d", "60-atoll-rename", **env).returncode == 0
    vol = store.volumes.show("vol-of-vm1")
    assert vol.volume is not None and vol.volume.ganeti["instance"] == "vm2"
    proc = installed.run(installed.hooks / "instance-remove-post.d", "60-atoll-remove", **HOOK)
    assert proc.returncode == 0, proc.stderr
    assert "instance vm1 is gone but its volume vol-of-vm1 is not: removing it" in proc.stderr
    assert store.volumes.list() == []
    again = installed.run(installed.hooks / "instance-remove-post.d", "60-atoll-remove", **HOOK)
    assert again.returncode == 0 and again.stderr == ""
