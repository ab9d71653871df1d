"""FixPartitionTable + AddSwap for SWAP=<partition>:<MiB>: a swap partition and its fstab line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from customization.errors import UnsupportedImage
from customization.params import InstanceParams
from tests.customization import verify
from tests.customization.conftest import MakeImage
from tests.customization.runner import run


@pytest.mark.parametrize("table", ["gpt", "mbr"])
def test_swap_partition_made_and_listed(make_image: MakeImage, table: str) -> None:
    info = make_image(table=table)
    disk = Path(info.path)
    run(info, InstanceParams(), ["FixPartitionTable", "FilesystemResize", "AddSwap"], {"SWAP": "2:256"},
        grow_to=2 << 30)  # fmt: skip
    offset, size = verify.partition(disk, 2)
    assert 256 << 20 <= size < 257 << 20
    probe = subprocess.run(
        ["blkid", "-p", "-o", "export", "-O", str(offset), str(disk)], capture_output=True, text=True
    )
    fields = dict(ln.split("=", 1) for ln in probe.stdout.splitlines())
    assert fields["TYPE"] == "swap"
    _, root_size = verify.partition(disk, 1)
    assert root_size > (2 << 30) - (256 << 20) - (4 << 20)
    verify.assert_table_clean(disk)
    verify.assert_fills_partition(disk, 1, "ext4")
    with verify.guest_root(disk, 1, "ext4") as root:
        assert f"UUID={fields['UUID']}\tnone\tswap\tsw\t0\t0" in (root / "etc/fstab").read_text().splitlines()
    again = run(info, InstanceParams(), ["FixPartitionTable", "AddSwap"], {"SWAP": "2:256"})
    assert again.outcome("FixPartitionTable").status.value == "unchanged"


def test_swap_on_another_disk_is_refused_before_writing(make_image: MakeImage) -> None:
    info = make_image()
    before = Path(info.path).stat().st_size
    with pytest.raises(UnsupportedImage, match="SWAP=b needs a second disk"):
        run(info, InstanceParams(), props={"SWAP": "b"}, grow_to=2 << 30)
    assert Path(info.path).stat().st_size == before
