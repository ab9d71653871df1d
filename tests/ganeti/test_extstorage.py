"""The ExtStorage verbs run as Ganeti runs them (shim, empty environment), against a real store."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from provider.datapath import loop
from provider.services import Resource
from tests.ganeti.conftest import Installed, add_image, last_line
from tests.helpers import need_root

VOL = "7d4f1c2e-0a51-4c0e-9a8b-5b2f3f6a9e10.ext.disk0"
MIB = 1 << 20


def _volumes(inst: Installed) -> list[Resource]:
    return inst.env.open().volumes.list()


def test_create_clones_the_origin_and_records_ganeti_identity(installed: Installed, tmp_path: Path) -> None:
    image = add_image(installed, tmp_path)
    proc = installed.ext(
        "create",
        VOL_NAME=VOL,
        VOL_SIZE="64",
        VOL_UUID="disk-uuid-1",
        VOL_CNAME="root",
        EXTP_PROVIDER="atoll",
        EXTP_ORIGIN=image,
        EXTP_ORIGIN_SIZE=str(32 * MIB),
        EXTP_ACCESS="kernelspace",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "created volume" in proc.stderr and f"thin clone of {image}" in proc.stderr
    (vol,) = _volumes(installed)
    store = installed.env.open()
    assert vol.name == VOL and vol.size == 64 * MIB and vol.parent == store.images.show(image).id
    assert vol.volume is not None
    assert vol.volume.ganeti == {
        "VOL_NAME": VOL,
        "provider": "atoll",
        "VOL_CNAME": "root",
        "VOL_UUID": "disk-uuid-1",
        "origin": image,
    }


def test_create_empty_and_again_for_the_same_disk(installed: Installed) -> None:
    for _ in range(2):
        proc = installed.ext("create", VOL_NAME=VOL, VOL_SIZE="16", VOL_UUID="u1", EXTP_PROVIDER="atoll")
        assert proc.returncode == 0, proc.stderr
    assert [(v.name, v.size) for v in _volumes(installed)] == [(VOL, 16 * MIB)]
    other = installed.ext("create", VOL_NAME=VOL, VOL_SIZE="16", VOL_UUID="u2")
    assert other.returncode == 1
    assert last_line(other.stderr) == f"atoll create: error: volume {VOL!r} already exists"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        pytest.param({"EXTP_ORIGIN": "nope"}, "source 'nope' not found", id="unknown-origin"),
        pytest.param(
            {"EXTP_ORIGIN": "{image}", "VOL_SIZE": "16"}, "is smaller than its source img", id="smaller"
        ),
        pytest.param(
            {"EXTP_ORIGIN": "{image}", "EXTP_ORIGIN_SIZE": "1024"}, "not origin_size=1024", id="size"
        ),
        pytest.param({"EXTP_ORIGN": "{image}"}, "unknown disk parameter(s) orign", id="typo"),
        pytest.param({"VOL_SIZE": "1.5"}, "VOL_SIZE='1.5' is not a whole number of MiB", id="size-unit"),
        pytest.param({"EXTP_REUSE_DATA": "yes", "VOL_CNAME": "gone"}, "volume 'gone' not found", id="reuse"),
    ],
)
def test_create_failures_are_one_line_and_leave_nothing(
    installed: Installed, tmp_path: Path, variables: dict[str, str], message: str
) -> None:
    image = add_image(installed, tmp_path)
    env = {"VOL_NAME": VOL, "VOL_SIZE": "64", "EXTP_PROVIDER": "atoll"}
    env.update({k: v.format(image=image) for k, v in variables.items()})
    proc = installed.ext("create", **env)
    assert proc.returncode in (1, 2)
    assert last_line(proc.stderr).startswith("atoll create: error: ")
    assert message in last_line(proc.stderr)
    assert _volumes(installed) == []


def test_origin_that_is_a_volume_is_refused(installed: Installed) -> None:
    installed.env.open().volumes.create("data", size=MIB)
    proc = installed.ext("create", VOL_NAME=VOL, VOL_SIZE="8", EXTP_ORIGIN="data")
    assert proc.returncode == 1
    assert last_line(proc.stderr) == (
        "atoll create: error: 'data' is a volume: clone a snapshot of it (atoll volume snapshot)"
    )
    assert [v.name for v in _volumes(installed)] == ["data"]


def test_reuse_data_adopts_an_existing_volume(installed: Installed) -> None:
    installed.env.open().volumes.create("vol-42", size=8 * MIB)
    proc = installed.ext(
        "create", VOL_NAME=VOL, VOL_SIZE="16", VOL_CNAME="vol-42", VOL_UUID="u9", EXTP_REUSE_DATA="True"
    )
    assert proc.returncode == 0, proc.stderr
    (vol,) = _volumes(installed)
    assert vol.name == "vol-42" and vol.size == 16 * MIB
    assert vol.volume is not None and vol.volume.ganeti["VOL_NAME"] == VOL
    assert installed.ext("setinfo", VOL_NAME=VOL, VOL_METADATA="originstname+web1").returncode == 0


def test_setinfo_grow_and_snapshot(installed: Installed, tmp_path: Path) -> None:
    image = add_image(installed, tmp_path)
    assert installed.ext("create", VOL_NAME=VOL, VOL_SIZE="64", EXTP_ORIGIN=image).returncode == 0
    assert installed.ext("setinfo", VOL_NAME=VOL, VOL_METADATA="originstname+web1").returncode == 0
    grow = installed.ext("grow", VOL_NAME=VOL, VOL_SIZE="64", VOL_NEW_SIZE="96")
    assert grow.returncode == 0, grow.stderr
    snap = installed.ext("snapshot", VOL_NAME=VOL, VOL_SNAPSHOT_NAME=VOL + ".snap", VOL_SNAPSHOT_SIZE="96")
    assert snap.returncode == 0, snap.stderr
    store = installed.env.open()
    vol = store.volumes.show(VOL)
    assert vol.size == 96 * MIB
    assert vol.volume is not None and vol.volume.ganeti["instance"] == "web1"
    assert vol.volume.ganeti["VOL_METADATA"] == "originstname+web1"
    shot = store.images.show(VOL + ".snap")  # a Snapshot: visible as an image and as an object
    assert shot.kind == "snapshot" and shot.object is not None and shot.object.path == f"snapshots/{VOL}.snap"
    again = installed.ext("snapshot", VOL_NAME=VOL, VOL_SNAPSHOT_NAME=VOL + ".snap", VOL_SNAPSHOT_SIZE="96")
    assert again.returncode == 0 and "replacing snapshot" in again.stderr


def test_verbs_without_the_volume(installed: Installed) -> None:
    for verb in ("open", "close", "verify"):
        assert installed.ext(verb, VOL_NAME=VOL, VOL_OPEN_EXCLUSIVE="True").returncode == 0
    attach = installed.ext("attach", VOL_NAME=VOL)
    assert attach.returncode == 1 and attach.stdout == ""
    assert last_line(attach.stderr) == f"atoll attach: error: volume {VOL!r} not found"
    grow = installed.ext("grow", VOL_NAME=VOL, VOL_SIZE="1")
    assert last_line(grow.stderr) == "atoll grow: error: VOL_NEW_SIZE is not set"


def test_attach_is_idempotent_and_snapshots_attach_too(installed_each: Installed, tmp_path: Path) -> None:
    need_root()
    installed, image = installed_each, add_image(installed_each, tmp_path)
    assert installed.ext("create", VOL_NAME=VOL, VOL_SIZE="64", EXTP_ORIGIN=image).returncode == 0
    first = installed.ext("attach", VOL_NAME=VOL, EXTP_ACCESS="kernelspace")
    assert first.returncode == 0, first.stderr
    device = first.stdout.splitlines()[0]
    assert device.startswith("/dev/") and stat.S_ISBLK(os.stat(device).st_mode)
    assert all(line.startswith("kvm:") for line in first.stdout.splitlines()[1:])
    assert installed.ext("attach", VOL_NAME=VOL).stdout == first.stdout
    snap = VOL + ".snap"
    assert (
        installed.ext("snapshot", VOL_NAME=VOL, VOL_SNAPSHOT_NAME=snap, VOL_SNAPSHOT_SIZE="64").returncode
        == 0
    )
    snap_dev = installed.ext("attach", VOL_NAME=snap)
    assert snap_dev.returncode == 0, snap_dev.stderr
    snap_device = snap_dev.stdout.splitlines()[0]
    assert snap_device != device and stat.S_ISBLK(os.stat(snap_device).st_mode)
    with open(snap_device, "rb") as src, open(device, "rb") as live:
        assert src.read(1 << 20) == live.read(1 << 20)
    for name in (snap, VOL):
        for verb in ("detach", "detach", "remove", "remove"):  # both idempotent
            proc = installed.ext(verb, VOL_NAME=name)
            assert proc.returncode == 0, proc.stderr
    assert _volumes(installed) == [] and installed.env.open().images.list(include_snapshots=True) == [
        installed.env.open().images.show(image)
    ]


def test_remove_after_an_attach_that_died_leaks_nothing(installed_each: Installed, tmp_path: Path) -> None:
    """Ganeti does not call remove when attach fails right after create; when someone does, nothing of
    the volume or its data path is left."""
    need_root()
    installed, image = installed_each, add_image(installed_each, tmp_path)
    assert installed.ext("create", VOL_NAME=VOL, VOL_SIZE="64", EXTP_ORIGIN=image).returncode == 0
    died = installed.ext("attach", VOL_NAME=VOL, ATOLL_FAILPOINT="ganeti.attach.before-print")
    assert died.returncode == -9 and died.stdout == ""
    store = installed.env.open()
    vol = store.volumes.show(VOL)
    backing = store.backend(vol.backend).path(vol.locator)
    removed = installed.ext("remove", VOL_NAME=VOL)
    assert removed.returncode == 0, removed.stderr
    assert _volumes(installed) == []
    assert not backing.exists() and loop.find(backing) == []
    run_dir = installed.env.config.run_dir
    assert not run_dir.exists() or not any(run_dir.iterdir())
