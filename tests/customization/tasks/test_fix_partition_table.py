"""FixPartitionTable: GPT backup header moved, root partition grown (MBR/GPT, primary/logical), ids kept."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from customization.params import InstanceParams
from customization.report import Status
from tests.customization import verify
from tests.customization.conftest import MakeImage
from tests.customization.runner import run, status


@pytest.mark.parametrize(
    ("table", "layout"), [("gpt", "root"), ("gpt", "esp+root"), ("mbr", "root"), ("mbr", "logical")]
)
def test_root_partition_grows_and_identity_is_kept(make_image: MakeImage, table: str, layout: str) -> None:
    info = make_image(table=table, layout=layout)
    disk = Path(info.path)
    before = verify.table(disk)
    report = run(info, InstanceParams(), ["FixPartitionTable"], grow_to=3 << 30)
    assert status(report, "FixPartitionTable") is Status.RAN
    after = verify.table(disk)
    assert (
        after["id"] == before["id"]
    )  # the MBR disk identifier / GPT disk GUID survive (parted changes them)
    old = {p["node"][-1]: p for p in before["partitions"]}
    new = {p["node"][-1]: p for p in after["partitions"]}
    root = str(info.root_partition)
    assert new[root]["start"] == old[root]["start"]
    assert new[root].get("uuid") == old[root].get("uuid") and new[root]["type"] == old[root]["type"]
    assert (new[root]["start"] + new[root]["size"]) * 512 > (3 << 30) - (1 << 20)
    if layout == "logical":
        assert new["2"]["start"] + new["2"]["size"] >= new["5"]["start"] + new["5"]["size"]
    verify.assert_table_clean(disk)
    assert status(run(info, InstanceParams(), ["FixPartitionTable"]), "FixPartitionTable") is Status.UNCHANGED


def test_gpt_backup_moves_even_when_root_is_not_last(make_image: MakeImage) -> None:
    info = make_image(size=1 << 30)
    disk = Path(info.path)
    # Shrink the root partition's share: put a data partition behind it on a 2 GiB disk.
    subprocess.run(["truncate", "-s", "2G", str(disk)], check=True)
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", "-a", str(disk)], input="size=64MiB\n",
                   text=True, check=True)  # fmt: skip
    subprocess.run(["truncate", "-s", "3G", str(disk)], check=True)
    report = run(info, InstanceParams(), ["FixPartitionTable"])
    assert "partition 1 is not last, not grown" in report.outcome("FixPartitionTable").message
    verify.assert_table_clean(disk)
    assert verify.partition(disk, 1)[1] == info.bytes


def test_corrupt_primary_gpt_is_rebuilt_from_the_backup(make_image: MakeImage) -> None:
    info = make_image()
    disk = Path(info.path)
    with open(disk, "r+b") as f:
        f.seek(512)
        f.write(b"\xde\xad" * 256)
    run(info, InstanceParams(), ["FixPartitionTable", "FilesystemResize"], grow_to=2 << 30)
    verify.assert_table_clean(disk)
    verify.assert_fills_partition(disk, 1, "ext4")
