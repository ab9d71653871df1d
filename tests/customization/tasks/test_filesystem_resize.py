"""FilesystemResize: ext2/3/4 offline, xfs and btrfs mounted; the fs fills the partition; no shrinking."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from customization.errors import DiskError, FilesystemError
from customization.params import InstanceParams
from customization.report import Status
from tests.customization import verify
from tests.customization.conftest import MakeImage
from tests.customization.runner import run, status


@pytest.mark.parametrize("fs", ["ext4", "xfs", "btrfs"])
@pytest.mark.parametrize("table", ["gpt", "mbr"])
def test_filesystem_fills_grown_partition(make_image: MakeImage, fs: str, table: str) -> None:
    info = make_image(table=table, fs=fs)
    disk = Path(info.path)
    report = run(info, InstanceParams(), ["FixPartitionTable", "FilesystemResize"], grow_to=3 << 30)
    assert status(report, "FilesystemResize") is Status.RAN
    assert disk.stat().st_size == 3 << 30  # resize2fs did not truncate the image
    verify.assert_fills_partition(disk, 1, fs)
    verify.assert_fs_clean(disk, 1, fs)
    verify.assert_table_clean(disk)
    again = run(info, InstanceParams(), ["FixPartitionTable", "FilesystemResize"])
    assert status(again, "FilesystemResize") is Status.UNCHANGED


@pytest.mark.parametrize("fs", ["ext4", "btrfs"])
def test_refuses_to_shrink(make_image: MakeImage, fs: str) -> None:
    info = make_image(fs=fs)
    disk = Path(info.path)
    argv = ["sfdisk", "-q", "--no-reread", "--no-tell-kernel", "-N", "1", str(disk)]
    subprocess.run(argv, input=", 512MiB\n", text=True, check=True)
    before = verify.digest(disk)
    with pytest.raises(
        DiskError, match=f"the {fs} filesystem .* is larger than partition 1 .*refusing to shrink"
    ):
        run(info, InstanceParams(), ["FixPartitionTable", "FilesystemResize"], grow_to=2 << 30)
    assert verify.digest(disk) == before  # nothing written, not even the growth


def test_resize_task_refuses_a_filesystem_bigger_than_its_partition(make_image: MakeImage) -> None:
    from customization.disk import open_disk, read_table
    from customization.guestfs import ext

    info = make_image()
    disk = open_disk(info.path)
    part = read_table(disk).get(1)
    sb = ext.superblock(disk, part)
    sb["Block count"] = str(int(sb["Block count"]) * 2)  # as if the fs had been made for a bigger partition
    with pytest.raises(FilesystemError, match=r"smaller than its filesystem .* refusing to shrink"):
        ext.resize(disk, part, sb)


def test_excluded_by_the_resize_group_switch(make_image: MakeImage) -> None:
    info = make_image()
    report = run(info, InstanceParams(), props={"EXCLUDE_FILESYSTEMRESIZE_TASKS": "yes"}, grow_to=2 << 30)
    assert report.outcome("FilesystemResize").message == "EXCLUDE_FilesystemResize_TASKS is set"
    assert verify.fs_size(Path(info.path), 1, "ext4") == info.bytes
