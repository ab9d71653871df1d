"""The engine: exclusion rules, validation before any write, reports, progress, failures and secrets."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

from customization import engine
from customization.errors import DiskError, PropertyError, TaskFailed, UnsupportedImage
from customization.params import InstanceParams, Secret
from customization.report import Status, TaskOutcome
from tests.customization import verify
from tests.customization.conftest import MakeImage

PASSWORD = "Sup3r-Secret-Pa55"


def test_exclude_all_tasks_clone_is_bit_identical_except_growth(make_image: MakeImage) -> None:
    info = make_image()
    disk = Path(info.path)
    size, original = verify.digest(disk)
    params = InstanceParams(hostname="x", password=Secret("y"))
    report = engine.customize(
        disk, {"EXCLUDE_ALL_TASKS": "yes", "OSFAMILY": "windows"}, params, grow_to=2 << 30
    )
    assert report.ok and {o.status for o in report.outcomes} == {Status.SKIPPED}
    assert all(o.message == "EXCLUDE_ALL_TASKS is set" for o in report.outcomes)
    assert disk.stat().st_size == 2 << 30
    with open(disk, "rb") as f:
        head = subprocess.run(["head", "-c", str(size)], stdin=f, capture_output=True, check=True).stdout
        import hashlib

        assert hashlib.sha256(head).hexdigest() == original
        with pytest.raises(OSError):
            os.lseek(f.fileno(), size, os.SEEK_DATA)  # nothing but a hole after the original bytes


@pytest.mark.parametrize(
    ("props", "error", "message"),
    [
        ({"EXCLUDE_ALL_TASKS": "perhaps"}, PropertyError, "EXCLUDE_ALL_TASKS='perhaps' is not a boolean"),
        ({"OSFAMILY": "windows"}, UnsupportedImage, "OSFAMILY=windows is not supported yet"),
        ({"ROOT_PARTITION": "3"}, DiskError, "partition 3 does not exist"),
        ({"EXCLUDE_TASK_Nope": "1"}, PropertyError, "EXCLUDE_TASK_NOPE: there is no task called 'NOPE'"),
    ],
)
def test_errors_come_before_any_write(make_image: MakeImage, props: dict, error: type, message: str) -> None:
    info = make_image()
    before = verify.digest(Path(info.path))
    with pytest.raises(error) as err:
        engine.customize(info.path, props, InstanceParams(hostname="vm"), grow_to=2 << 30)
    assert str(err.value).startswith(message) or message in str(err.value)
    assert verify.digest(Path(info.path)) == before


def test_report_progress_and_json(make_image: MakeImage) -> None:
    info = make_image()
    seen: list[TaskOutcome] = []
    report = engine.customize(
        info.path,
        {"exclude_task_deletesshkeys": "Yes"},
        InstanceParams(hostname="vm7"),
        on_progress=seen.append,
    )
    assert seen == report.outcomes
    assert [o.name for o in seen] == [m.META.name for m in engine.all_tasks()]
    data = json.loads(json.dumps(report.to_dict()))
    tasks = {t["name"]: t for t in data["tasks"]}
    assert tasks["AssignHostname"]["status"] == "ran"
    assert tasks["DeleteSSHKeys"] == {"name": "DeleteSSHKeys", "status": "skipped", "message":
                                      "EXCLUDE_TASK_DeleteSSHKeys is set", "seconds": 0.0}  # fmt: skip
    assert tasks["ChangePassword"]["message"] == "nothing asked (password or password_hash not given)"
    assert tasks["FixPartitionTable"]["status"] == "unchanged"
    assert data["facts"] == {"table": "gpt", "root_partition": 1, "filesystem": "ext4", "access": "debugfs",
                             "guest_os": "Debian GNU/Linux 12 (bookworm)"}  # fmt: skip
    assert seen[3].line().startswith("AssignHostname: ran (")


def test_exclude_mounted_tasks_leaves_only_disk_tasks(make_image: MakeImage) -> None:
    info = make_image()
    report = engine.customize(
        info.path, {"EXCLUDE_MOUNTED_TASKS": "on"}, InstanceParams(hostname="vm"), grow_to=2 << 30
    )
    ran = [o.name for o in report.outcomes if o.status is Status.RAN]
    assert ran == ["FixPartitionTable", "FilesystemResize"]
    with verify.guest_root(Path(info.path), 1, "ext4") as root:
        assert (root / "etc/hostname").read_text() == "template\n"


def test_failure_reports_and_cleans_up(make_image: MakeImage) -> None:
    info = make_image(fs="xfs")
    mounts_before, loops_before = verify.leftovers()
    seen: list[TaskOutcome] = []
    with pytest.raises(TaskFailed) as err:
        params = InstanceParams(hostname="vm", password=Secret(PASSWORD))
        engine.customize(info.path, {"USERS": "root ghost"}, params, on_progress=seen.append)
    assert str(err.value) == "ChangePassword: USERS names accounts the guest does not have: ghost"
    assert err.value.report.outcomes[-1].status is Status.FAILED
    assert seen[-1].name == "ChangePassword"
    assert verify.leftovers() == (mounts_before, loops_before)  # no mount, no loop device left
    verify.assert_fs_clean(Path(info.path), 1, "xfs")


def test_secrets_stay_out_of_logs_errors_and_argv(
    make_image: MakeImage, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = make_image()
    argvs: list[list[str]] = []
    real_run, real_popen = subprocess.run, subprocess.Popen

    def spy_run(args, *a, **kw):  # type: ignore[no-untyped-def]
        argvs.append(list(args))
        return real_run(args, *a, **kw)

    class SpyPopen(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, args, *a, **kw):  # type: ignore[no-untyped-def]
            argvs.append(list(args))
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "run", spy_run)
    monkeypatch.setattr(subprocess, "Popen", SpyPopen)
    caplog.set_level(logging.DEBUG)
    params = InstanceParams(hostname="vm", password=Secret(PASSWORD))
    report = engine.customize(info.path, {}, params)
    with pytest.raises(TaskFailed) as err:
        engine.customize(info.path, {"USERS": "ghost"}, params)
    assert argvs and report.ok
    assert all(PASSWORD not in " ".join(a) for a in argvs)
    assert PASSWORD not in caplog.text
    assert PASSWORD not in str(err.value) and PASSWORD not in json.dumps(err.value.report.to_dict())
    assert PASSWORD not in repr(params)


def _vfat_data_disk(path: Path) -> Path:
    """A disk with an MBR and one vfat partition: a data disk, no Linux system."""
    with open(path, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["sfdisk", "--quiet", str(path)], input=b"2048,,c\n", check=True)
    part = path.with_suffix(".part")
    with open(part, "wb") as f:
        f.truncate((64 << 20) - (2048 * 512))
    subprocess.run(["mkfs.vfat", str(part)], check=True, capture_output=True)
    subprocess.run(
        ["dd", f"if={part}", f"of={path}", "bs=1M", "seek=1", "conv=notrunc,sparse"],
        check=True,
        capture_output=True,
    )
    return path


@pytest.mark.parametrize("kind", ["blank", "vfat"])
def test_data_disks_are_left_as_they_are_when_asked(tmp_path: Path, kind: str) -> None:
    """A clone nobody asked to customize (no OSFAMILY, no instance parameter): an ISO, a blank or a vfat
    data disk is left bit-identical (grown) with every task skipped and the reason; otherwise it fails."""
    disk = tmp_path / "data.raw"
    if kind == "blank":
        with open(disk, "wb") as f:
            f.truncate(32 << 20)
            f.write(b"not a partition table" * 100)
    else:
        _vfat_data_disk(disk)
    size, original = verify.digest(disk)
    params = InstanceParams(hostname="data")
    with pytest.raises(DiskError):
        engine.customize(disk, {}, params)  # the strict default (Ganeti's OS create, explicit options)
    with pytest.raises(DiskError):
        engine.customize(disk, {"OSFAMILY": "linux"}, params, data_disks=True)  # a system that is none
    report = engine.customize(disk, {}, params, data_disks=True, grow_to=size * 2)
    assert report.ok and {o.status for o in report.outcomes} == {Status.SKIPPED}
    reason = "no readable partition table" if kind == "blank" else "no Linux filesystem on its partitions"
    assert all(
        o.message.startswith("a data disk, left as it is") and reason in o.message for o in report.outcomes
    )
    assert disk.stat().st_size == size * 2
    with open(disk, "rb") as f:
        assert hashlib.sha256(f.read(size)).hexdigest() == original


def test_a_linux_system_is_customized_even_when_data_disks_pass(make_image: MakeImage) -> None:
    info = make_image()
    report = engine.customize(Path(info.path), {}, InstanceParams(hostname="sys1"), data_disks=True)
    assert report.ok and any(o.status == Status.RAN for o in report.outcomes)
