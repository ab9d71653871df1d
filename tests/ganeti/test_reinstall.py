"""``gnt-instance reinstall`` as the OS definition sees it: the disk is attached, INSTANCE_REINSTALL=1.

The volume becomes a fresh clone of its origin again, no data copied, and the attached device keeps
working and shows nothing of the old data: on reflink the file is cloned over in place; on qcow2 a new
top over the origin is created and the running qemu-storage-daemon switches to it (the old top is closed
and removed); on rbd a new clone of the origin's snapshot is attached in place of the old image (the
same loop device on rbd-fuse, or the new image's URI in userspace) and the old image is removed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provider.services.local_disk import local_disk
from tests.ganeti import guest
from tests.ganeti.conftest import Installed, register_image
from tests.helpers import need_root

VOL = "3c9d2e1f-4a5b-4c6d-8e7f-9a0b1c2d3e4f.ext.disk0"
MIB = 1 << 20
OS_ENV = {"OS_API_VERSION": "20", "OS_NAME": "atoll", "OS_VARIANT": "default", "DEBUG_LEVEL": "0"}


@pytest.mark.parametrize("installed_each", ["qcow2", "reflink", "rbd"], indirect=True)
def test_reinstall_reclones_the_volume_without_copying(installed_each: Installed, guest_image: Path) -> None:
    installed = installed_each
    size_mib = _clone_of_guest(installed, guest_image, "disk-1", 256)
    device = installed.ext("attach", VOL_NAME=VOL).stdout.splitlines()[0]
    env = {
        **OS_ENV,
        "INSTANCE_NAME": "vm1",
        "DISK_COUNT": "1",
        "DISK_0_PATH": device,
        "DISK_0_UUID": "disk-1",
    }
    first = installed.run(installed.os, "create", **env)
    assert first.returncode == 0, first.stderr
    with open(device, "r+b") as dev:  # the instance writes all over its disk
        for off in range(0, size_mib * MIB, 16 * MIB):
            dev.seek(off)
            dev.write(b"old instance data" * 241)
        os.fsync(dev.fileno())  # the instance shut down cleanly
    store = installed.env.open()
    vol = store.volumes.show(VOL)
    backend = store.backend(vol.backend)
    dirty = backend.allocated_bytes(vol.locator)

    again = installed.run(
        installed.os, "create", **{**env, "INSTANCE_NAME": "vm2", "INSTANCE_REINSTALL": "1"}
    )
    assert again.returncode == 0, again.stderr
    assert "is a fresh clone of guest again" in again.stderr and "copying" not in again.stderr
    with open(device, "rb") as dev:  # read through the device Ganeti attached before the reinstall
        assert b"old instance data" not in dev.read()
    now = store.volumes.show(VOL)
    assert backend.allocated_bytes(now.locator) < min(dirty, 32 * MIB)  # shares the origin's data
    assert now.size == size_mib * MIB and now.parent == vol.parent
    if vol.backend == "reflink":  # cloned over in place
        assert now.locator == vol.locator
        assert guest.read_file(backend.path(vol.locator), "/etc/hostname").strip() == "vm2"
        guest.assert_fs_fills_partition(backend.path(vol.locator))
    else:  # a new top (qcow2) or image (rbd), served at the same device; the old one is gone
        assert now.locator != vol.locator and not backend.exists(vol.locator)
        assert guest.read_file(device, "/etc/hostname").strip() == "vm2"
        assert installed.ext("attach", VOL_NAME=VOL).stdout.splitlines()[0] == device
        if vol.backend == "qcow2":
            assert _open_by_any_process(backend.path(vol.locator)) == []
        assert installed.ext("detach", VOL_NAME=VOL).returncode == 0
        with local_disk(store, VOL, writable=False) as disk:  # what the next attach serves
            assert guest.read_file(disk, "/etc/hostname").strip() == "vm2"
            guest.assert_fs_fills_partition(disk)
    assert installed.ext("remove", VOL_NAME=VOL).returncode == 0


@pytest.mark.parametrize("installed_each", ["rbd"], indirect=True)
def test_reinstall_of_an_rbd_disk_attached_in_userspace(installed_each: Installed, guest_image: Path) -> None:
    """access=userspace on rbd: no device on the host; the reinstall attaches the new image by its URI,
    which the next attach prints for QEMU."""
    installed = installed_each
    _clone_of_guest(installed, guest_image, "disk-3", 64)
    device, uri = installed.ext("attach", VOL_NAME=VOL, EXTP_ACCESS="userspace").stdout.splitlines()
    assert device == "" and uri.startswith("kvm:rbd:")
    env = {**OS_ENV, "INSTANCE_NAME": "vm4", "DISK_COUNT": "1", "DISK_0_URI": uri, "DISK_0_UUID": "disk-3"}
    assert installed.run(installed.os, "create", **env).returncode == 0
    store = installed.env.open()
    before = store.volumes.show(VOL)
    again = installed.run(
        installed.os, "create", **{**env, "INSTANCE_NAME": "vm5", "INSTANCE_REINSTALL": "1"}
    )
    assert again.returncode == 0, again.stderr
    assert "is a fresh clone of guest again" in again.stderr and "copying" not in again.stderr
    now = store.volumes.show(VOL)
    backend = store.backend(now.backend)
    assert now.locator != before.locator and not backend.exists(before.locator)
    _, new_uri = installed.ext("attach", VOL_NAME=VOL, EXTP_ACCESS="userspace").stdout.splitlines()
    assert new_uri != uri and new_uri.startswith("kvm:rbd:")  # what QEMU opens at the next start
    assert installed.ext("detach", VOL_NAME=VOL).returncode == 0
    with local_disk(store, VOL, writable=False) as disk:
        assert guest.read_file(disk, "/etc/hostname").strip() == "vm5"
    assert installed.ext("remove", VOL_NAME=VOL).returncode == 0


@pytest.mark.parametrize("installed_each", ["rbd"], indirect=True)
def test_reinstall_of_an_rbd_disk_still_open_copies_instead(
    installed_each: Installed, guest_image: Path
) -> None:
    """The old image cannot be swapped out while something holds its device open: the reinstall says so
    and copies the origin onto the volume (same image), customized all the same."""
    installed = installed_each
    _clone_of_guest(installed, guest_image, "disk-5", 64)
    device = installed.ext("attach", VOL_NAME=VOL).stdout.splitlines()[0]
    store = installed.env.open()
    before = store.volumes.show(VOL)
    env = {
        **OS_ENV,
        "INSTANCE_NAME": "vm6",
        "DISK_COUNT": "1",
        "DISK_0_PATH": device,
        "DISK_0_UUID": "disk-5",
        "INSTANCE_REINSTALL": "1",
    }
    with open(device, "rb"):  # another process (this one) has the device open
        again = installed.run(installed.os, "create", **env)
    assert again.returncode == 0, again.stderr
    assert "cannot be re-cloned in place" in again.stderr and "copying guest" in again.stderr
    assert store.volumes.show(VOL).locator == before.locator
    assert guest.read_file(device, "/etc/hostname").strip() == "vm6"
    assert installed.ext("detach", VOL_NAME=VOL).returncode == 0
    assert installed.ext("remove", VOL_NAME=VOL).returncode == 0


def _clone_of_guest(installed: Installed, guest_image: Path, disk_uuid: str, extra_mib: int) -> int:
    """Volume VOL, made by Ganeti's ``create`` as a clone of the guest image (registered now) ``extra_mib``
    MiB larger than it; its size in MiB."""
    need_root()
    register_image(installed.env, guest_image, "guest")
    size_mib = (guest_image.stat().st_size >> 20) + extra_mib
    create = installed.ext(
        "create", VOL_NAME=VOL, VOL_SIZE=str(size_mib), VOL_UUID=disk_uuid, EXTP_ORIGIN="guest"
    )
    assert create.returncode == 0, create.stderr
    return size_mib


def _open_by_any_process(path: Path) -> list[str]:
    """The /proc fd links that still point at ``path`` (a removed file shows `` (deleted)``)."""
    found = []
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.removesuffix(" (deleted)") == str(path):
            found.append(str(fd))
    return found


def test_os_create_on_a_qcow2_disk_attached_in_userspace(installed: Installed, guest_image: Path) -> None:
    """access=userspace: Ganeti hands the OS no block device, only the NBD URI; the OS reaches the export
    through nbdfuse while Ganeti keeps it attached."""
    _clone_of_guest(installed, guest_image, "disk-2", 64)
    attach = installed.ext("attach", VOL_NAME=VOL, EXTP_ACCESS="userspace")
    assert attach.returncode == 0, attach.stderr
    device, uri = attach.stdout.splitlines()
    assert device == "" and uri.startswith("kvm:nbd:unix:")
    env = {**OS_ENV, "INSTANCE_NAME": "vm3", "DISK_COUNT": "1", "DISK_0_URI": uri, "DISK_0_UUID": "disk-2"}
    proc = installed.run(installed.os, "create", **env)
    assert proc.returncode == 0, proc.stderr
    assert "AssignHostname: ran" in proc.stderr
    again = installed.ext("attach", VOL_NAME=VOL, EXTP_ACCESS="userspace")
    assert again.stdout == attach.stdout  # the export Ganeti uses is still there
    assert installed.ext("detach", VOL_NAME=VOL).returncode == 0
    store = installed.env.open()
    with local_disk(store, VOL, writable=False) as disk:
        assert guest.read_file(disk, "/etc/hostname").strip() == "vm3"
    assert installed.ext("remove", VOL_NAME=VOL).returncode == 0
