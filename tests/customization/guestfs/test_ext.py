"""e2fsprogs traps, proven with the real tools: resize2fs truncation, debugfs exiting 0, journal replay."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from customization import disk as d
from customization.errors import FilesystemError
from customization.guestfs import ext
from customization.guestfs.debugfs import DebugfsFS
from tests.customization import verify
from tests.customization.conftest import MakeImage


def _grown(make_image: MakeImage) -> tuple[d.Disk, d.Partition]:
    info = make_image()
    os.truncate(info.path, 2 << 30)
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", "-N", "1", info.path], input=", +\n",
                   text=True, check=True)  # fmt: skip
    disk = d.open_disk(info.path)
    return disk, d.read_table(disk).get(1)


def test_plain_resize2fs_truncates_the_image(make_image: MakeImage) -> None:
    """The trap itself: with stdin open, resize2fs chops `offset` bytes off the image's end."""
    disk, part = _grown(make_image)
    subprocess.run(["e2fsck", "-fy", ext.spec(disk, part)], capture_output=True)
    subprocess.run(["resize2fs", ext.spec(disk, part), f"{part.bytes // 1024}K"], stdin=subprocess.DEVNULL,
                   capture_output=True, check=True)  # fmt: skip
    assert os.stat(disk.path).st_size == part.bytes // 4096 * 4096  # the fs size, as if there were no offset


def test_engine_resize_keeps_the_image_size(make_image: MakeImage) -> None:
    disk, part = _grown(make_image)
    before, after = ext.resize(disk, part, ext.prepare(disk, part))
    assert os.stat(disk.path).st_size == disk.size
    assert after > before and part.bytes - after < 4096
    verify.assert_table_clean(Path(disk.path))
    ext.check(disk, part)


def test_debugfs_failures_are_errors_despite_exit_0(make_image: MakeImage) -> None:
    info = make_image()
    guest = DebugfsFS(f"{info.path}?offset={info.offset}")
    try:
        assert (
            subprocess.run(["debugfs", "-R", "cat /no/such/file", guest.spec], capture_output=True).returncode
            == 0
        )
        with pytest.raises(FilesystemError, match=r"debugfs: .*File not found"):
            guest._run(["cat /no/such/file"])
    finally:
        guest.close()


def test_journal_replay_without_root_uses_a_sparse_copy(make_image: MakeImage) -> None:
    info = make_image(dirty=True)
    disk = d.open_disk(info.path)
    part = d.read_table(disk).get(1)
    assert ext.is_dirty(ext.superblock(disk, part))
    ext._repair_extracted(disk, part)  # the path taken by a non-root caller
    assert not ext.is_dirty(ext.superblock(disk, part))
    assert os.stat(disk.path).st_size == disk.size
    out = subprocess.run(
        ["debugfs", "-R", "cat /etc/journaled", ext.spec(disk, part)], capture_output=True, text=True
    )
    assert out.stdout == "written before the crash\n"
    verify.assert_fs_clean(Path(disk.path), 1, "ext4")
    verify.assert_table_clean(Path(disk.path))
