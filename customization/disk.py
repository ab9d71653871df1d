"""The raw disk and its partition table (MBR or GPT), read and changed with sfdisk only, never parted."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from dataclasses import dataclass

from atoll_common import process
from customization.errors import DiskError, ToolError

LOG = logging.getLogger(__name__)

SECTOR = 512
EXTENDED_TYPES = frozenset({"5", "f", "85"})
MBR_LIMIT_SECTORS = 2**32  # MBR cannot address past 2 TiB
LINUX_FILESYSTEMS = ("ext2", "ext3", "ext4", "xfs", "btrfs")
SWAP_TYPE = {"gpt": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "dos": "82"}
_SFDISK_QUIET = ("--no-reread", "--no-tell-kernel")


@dataclass(frozen=True)
class Disk:
    """A raw disk: a regular file or a block device."""

    path: str
    size: int
    is_block: bool

    @property
    def sectors(self) -> int:
        return self.size // SECTOR


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # sectors
    size: int  # sectors
    type: str
    uuid: str | None = None
    name: str | None = None

    @property
    def end(self) -> int:
        """First sector after the partition."""
        return self.start + self.size

    @property
    def offset(self) -> int:
        return self.start * SECTOR

    @property
    def bytes(self) -> int:
        return self.size * SECTOR

    @property
    def is_extended(self) -> bool:
        return self.type.lower() in EXTENDED_TYPES


@dataclass(frozen=True)
class PartitionTable:
    label: str  # "gpt" or "dos"
    id: str
    partitions: tuple[Partition, ...]
    last_lba: int | None = None
    primary_gpt_corrupt: bool = False  # sfdisk fell back to the backup GPT

    def get(self, number: int) -> Partition:
        for part in self.partitions:
            if part.number == number:
                return part
        raise DiskError(f"partition {number} does not exist (the disk has {self.numbers() or 'none'})")

    def numbers(self) -> str:
        return ", ".join(str(p.number) for p in self.partitions)

    def extended(self) -> Partition | None:
        return next((p for p in self.partitions if p.is_extended), None)


def _device_size(path: str) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def open_disk(path: str | os.PathLike[str]) -> Disk:
    """Stat ``path``: it must be a regular file or a block device with a whole number of sectors."""
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except OSError as e:
        raise DiskError(f"{name}: {e.strerror}") from e
    if stat.S_ISREG(st.st_mode):
        size, is_block = st.st_size, False
    elif stat.S_ISBLK(st.st_mode):
        size, is_block = _device_size(name), True
    else:
        raise DiskError(f"{name} is neither a regular file nor a block device")
    if size == 0 or size % SECTOR:
        raise DiskError(f"{name}: size {size} is not a whole number of 512-byte sectors")
    return Disk(name, size, is_block)


def grow_disk(disk: Disk, grow_to: int | None) -> Disk:
    """Make the disk ``grow_to`` bytes long (files are extended sparsely; nothing ever shrinks)."""
    if grow_to is None or grow_to == disk.size:
        return disk
    if grow_to % SECTOR:
        raise DiskError(f"grow_to={grow_to} is not a multiple of {SECTOR}")
    if grow_to < disk.size:
        raise DiskError(f"{disk.path} is {disk.size} bytes; refusing to shrink it to {grow_to}")
    if disk.is_block:
        raise DiskError(f"{disk.path} is a {disk.size}-byte block device; grow the volume to {grow_to} first")
    os.truncate(disk.path, grow_to)
    return open_disk(disk.path)


def _number(node: str) -> int:
    match = re.search(r"(\d+)$", node)
    if not match:
        raise DiskError(f"sfdisk returned a partition without a number: {node!r}")
    return int(match.group(1))


def read_table(disk: Disk) -> PartitionTable:
    """Read and sanity-check the partition table; a corrupt table or a partition past the end is an error."""
    try:
        result = process.run(["sfdisk", "--json", disk.path])
    except ToolError as e:
        raise DiskError(f"{disk.path}: no readable partition table ({e})") from e
    out = result.stdout
    try:
        data = json.loads(out)["partitiontable"]
    except (ValueError, KeyError) as e:
        raise DiskError(f"{disk.path}: no readable partition table") from e
    if data.get("sectorsize", SECTOR) != SECTOR:
        raise DiskError(f"{disk.path}: sector size {data.get('sectorsize')} is not supported")
    parts = tuple(
        Partition(
            _number(p["node"]), int(p["start"]), int(p["size"]), str(p["type"]), p.get("uuid"), p.get("name")
        )
        for p in data.get("partitions", [])
    )
    corrupt = "primary GPT table is corrupt" in result.stderr
    table = PartitionTable(str(data.get("label")), str(data.get("id")), parts, data.get("lastlba"), corrupt)
    if table.label not in ("gpt", "dos"):
        raise DiskError(f"{disk.path}: partition table type {table.label!r} is not supported (MBR or GPT)")
    if not parts:
        raise DiskError(f"{disk.path}: the partition table has no partitions")
    for part in parts:
        if part.size <= 0 or part.start <= 0 or part.end > disk.sectors:
            raise DiskError(
                f"{disk.path}: partition {part.number} (sectors {part.start}-{part.end - 1}) lies past "
                f"the end of the {disk.sectors}-sector disk"
            )
    if table.label == "dos" and any(p.type.lower() == "ee" for p in parts):
        raise DiskError(
            f"{disk.path}: a protective MBR without a valid GPT (corrupt GPT headers or a truncated disk)"
        )
    return table


def superblock_size(disk: Disk, part: Partition, fstype: str) -> int | None:
    """The size a filesystem claims in its superblock (ext, xfs, btrfs), read without any tool."""
    fd = os.open(disk.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if fstype in ("ext2", "ext3", "ext4"):
            sb = os.pread(fd, 1024, part.offset + 1024)
            blocks = int.from_bytes(sb[4:8], "little")
            if int.from_bytes(sb[0x60:0x64], "little") & 0x80:  # INCOMPAT_64BIT
                blocks |= int.from_bytes(sb[0x150:0x154], "little") << 32
            return blocks * (1024 << int.from_bytes(sb[0x18:0x1C], "little"))
        if fstype == "xfs":
            sb = os.pread(fd, 16, part.offset)
            return int.from_bytes(sb[4:8], "big") * int.from_bytes(sb[8:16], "big")
        if fstype == "btrfs":
            sb = os.pread(fd, 0xE0, part.offset + 0x10000)
            return int.from_bytes(sb[0xD1:0xD9], "little")  # dev_item.total_bytes of this device
        return None
    finally:
        os.close(fd)


def check_fits(disk: Disk, part: Partition, fstype: str) -> None:
    """A filesystem larger than its partition is a damaged image: refuse before anything is written."""
    size = superblock_size(disk, part, fstype)
    if size is not None and size > part.bytes:
        raise DiskError(
            f"the {fstype} filesystem ({size} bytes) is larger than partition {part.number} "
            f"({part.bytes} bytes); refusing to shrink or use it"
        )


def probe_filesystem(disk: Disk, part: Partition) -> str | None:
    """The filesystem type on ``part`` as blkid sees it (ext4, xfs, btrfs, swap, vfat, ...), or None."""
    result = process.run(
        [
            "blkid",
            "--probe",
            "--output",
            "export",
            "--offset",
            str(part.offset),
            "--size",
            str(part.bytes),
            disk.path,
        ],
        check=False,
    )
    if result.exit_code not in (0, 2):  # 2: nothing found
        raise DiskError(f"blkid cannot probe partition {part.number}: {process.last_line(result.stderr)}")
    fields = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return fields.get("TYPE")


def find_root(disk: Disk, table: PartitionTable, wanted: int | None) -> tuple[Partition, str]:
    """The root partition (ROOT_PARTITION, or the only Linux filesystem) and its filesystem type."""
    if wanted is not None:
        part = table.get(wanted)
        if part.is_extended:
            raise DiskError(f"ROOT_PARTITION={wanted} is the extended partition, not a filesystem")
        return part, probe_filesystem(disk, part) or "unknown"
    found = linux_filesystems(disk, table)
    if len(found) != 1:
        which = ", ".join(str(p.number) for p, _ in found) or "none"
        raise DiskError(f"cannot tell the root partition (Linux filesystems on: {which}); set ROOT_PARTITION")
    return found[0]


def linux_filesystems(disk: Disk, table: PartitionTable) -> list[tuple[Partition, str]]:
    """The partitions holding a Linux filesystem, with its type."""
    found = []
    for part in table.partitions:
        if not part.is_extended:
            fstype = probe_filesystem(disk, part)
            if fstype in LINUX_FILESYSTEMS:
                found.append((part, fstype))
    return found


def _sfdisk_set(disk: Disk, number: int, spec: str) -> None:
    process.run(["sfdisk", "--quiet", *_SFDISK_QUIET, "-N", str(number), disk.path], input=spec.encode())


def relocate_gpt_backup(disk: Disk) -> None:
    """Move the GPT backup header and entries to the end of a grown disk."""
    process.run(["sfdisk", "--quiet", *_SFDISK_QUIET, "--relocate", "gpt-bak-std", disk.path])


def is_last(table: PartitionTable, part: Partition) -> bool:
    """Whether nothing on the disk starts after ``part`` (its extended container, for a logical one)."""
    holder = table.extended() if table.label == "dos" and part.number >= 5 else part
    assert holder is not None
    return all(p.start <= holder.start for p in table.partitions if p.number < 5 or table.label == "gpt")


def usable_end(disk: Disk, table: PartitionTable) -> int:
    """First sector past the area partitions may use."""
    if table.label == "gpt":
        return disk.sectors - 33  # 32 sectors of entries and the backup header
    return min(disk.sectors, MBR_LIMIT_SECTORS)


def resize_partition(
    disk: Disk, table: PartitionTable, part: Partition, new_end: int | None
) -> PartitionTable:
    """Grow ``part`` (and its extended container) to end before ``new_end``, or to the end of the disk."""
    spec = ", +" if new_end is None else f", {new_end - part.start}"
    if table.label == "dos" and part.number >= 5:
        ext = table.extended()
        assert ext is not None
        _sfdisk_set(disk, ext.number, ", +" if new_end is None else f", {new_end - ext.start}")
    _sfdisk_set(disk, part.number, spec)
    after = read_table(disk)
    new = after.get(part.number)
    if (new.start, new.type, new.uuid) != (part.start, part.type, part.uuid) or new.size < part.size:
        raise DiskError(f"sfdisk changed partition {part.number} unexpectedly (start, type, uuid or size)")
    if after.id != table.id:
        raise DiskError(f"the disk identifier changed from {table.id} to {after.id}")
    return after


def add_partition(
    disk: Disk, table: PartitionTable, number: int, start: int, size: int, ptype: str
) -> PartitionTable:
    _sfdisk_set(disk, number, f"start={start}, size={size}, type={ptype}")
    after = read_table(disk)
    new = after.get(number)
    if new.start != start or new.size < size:
        raise DiskError(f"sfdisk did not create partition {number} where asked")
    return after


def verify_table(disk: Disk) -> None:
    """sfdisk's own consistency check (overlaps, bounds, GPT headers)."""
    result = process.run(["sfdisk", "--verify", disk.path], check=False)
    text = (result.stdout + result.stderr).strip()
    if result.exit_code != 0 or "No errors detected" not in text:
        raise DiskError(f"{disk.path}: partition table check failed: {process.last_line(text)}")
