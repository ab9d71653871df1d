"""Read-only looks inside a guest disk (file or block device): files of the root ext4, the partitions."""

from __future__ import annotations

from pathlib import Path

from tests.customization.verify import partition, sh, table


def read_file(disk: str | Path, guest_path: str, number: int = 1) -> str:
    """The content of ``guest_path`` on partition ``number`` (ext2/3/4), read with debugfs."""
    offset, _size = partition(Path(disk), number)
    return sh("debugfs", "-R", f"cat {guest_path}", f"{disk}?offset={offset}").stdout


def root_partition_end(disk: str | Path, number: int = 1) -> int:
    offset, size = partition(Path(disk), number)
    return offset + size


def has_table(disk: str | Path) -> bool:
    return bool(table(Path(disk)).get("partitions"))


def assert_fs_fills_partition(disk: str | Path, number: int = 1) -> None:
    """The ext filesystem on partition ``number`` spans (nearly) the whole partition."""
    offset, size = partition(Path(disk), number)
    out = sh("dumpe2fs", "-h", f"{disk}?offset={offset}").stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    fs_bytes = int(fields["Block count"]) * int(fields["Block size"])
    assert size - fs_bytes < 4 << 20, f"filesystem {fs_bytes} bytes in a {size}-byte partition"
