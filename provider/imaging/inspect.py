"""Tell a disk image's format from its headers and refuse what is unsafe to hand to ``qemu-img``.

The inspector only reads bytes (through a ``read(offset, length)`` function) and runs before any tool
opens the data: a qcow2 naming a backing file or an external data file would make ``qemu-img`` read a
host file (``/etc/shadow``) into the image, a vmdk descriptor points at extents outside the upload, a
header may claim a petabyte. Each refusal is an :class:`ImageRefused` with the reason.
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provider.errors import InvalidInput
from provider.utils.sizes import format_size

Reader = Callable[[int, int], bytes]

FORMATS = ("raw", "qcow2", "vmdk", "vhdx", "vpc", "vdi", "iso")
STORED_AS_IS = ("raw", "iso")  # every other accepted format is converted to raw

_UNSUPPORTED = {
    b"QEF\x00": "qed",
    b"LUKS\xba\xbe": "luks",
    b"WithoutFreeSpace": "parallels",
    b"WithouFreSpacExt": "parallels",
    b"COWD": "vmdk3 (COWD)",
}
_QCOW2_DATA_FILE_EXT = 0x44415441
_QCOW2_INCOMPAT_CORRUPT = 1 << 1
_QCOW2_INCOMPAT_DATA_FILE = 1 << 2
_VHDX_METADATA = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
_VHDX_FILE_PARAMS = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
_VHDX_VIRTUAL_SIZE = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
_VHDX_PARENT_LOCATOR = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
_VMDK_TYPES = ("monolithicSparse", "streamOptimized")
_VMDK_EXTENT = re.compile(r'^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\S+)(?:\s+"([^"]*)")?')


class ImageRefused(InvalidInput):
    """The upload is not a disk image Atoll will convert or store (unsafe, unsupported or mislabelled)."""

    message = "image refused: %(reason)s"


@dataclass(frozen=True)
class Inspection:
    format: str  # one of FORMATS
    virtual_size: int  # bytes the guest sees
    size: int  # bytes of the upload itself

    @property
    def needs_conversion(self) -> bool:
        return self.format not in STORED_AS_IS


def inspect_file(path: Path, *, declared: str | None = None, max_virtual_size: int) -> Inspection:
    """:func:`inspect` on a local file."""
    with open(path, "rb") as f:

        def read(offset: int, length: int) -> bytes:
            f.seek(offset)
            return f.read(length)

        return inspect(read, path.stat().st_size, declared=declared, max_virtual_size=max_virtual_size)


def inspect(read: Reader, size: int, *, declared: str | None = None, max_virtual_size: int) -> Inspection:
    """Detect the format of the ``size`` bytes ``read`` gives, check it against ``declared`` and refuse
    unsafe images and virtual sizes above ``max_virtual_size``.

    :raises ImageRefused: with the reason.
    """
    if declared is not None and declared not in FORMATS:
        raise ImageRefused(reason=f"disk format {declared!r} is not one of {', '.join(FORMATS)}")
    detected = detect(read, size)
    fmt = detected
    if declared is not None and declared != detected:
        if not (declared == "raw" and detected == "iso"):  # an ISO is raw bytes: stored as is either way
            raise ImageRefused(
                reason=f"the disk format is declared {declared} but the data is a {detected} image"
            )
        fmt = declared
    virtual = _VIRTUAL_SIZE[detected](read, size)
    if virtual > max_virtual_size:
        raise ImageRefused(
            reason=f"virtual size {format_size(virtual)} ({virtual} bytes) is above the limit of "
            f"{format_size(max_virtual_size)} (imports.max_virtual_size)"
        )
    return Inspection(format=fmt, virtual_size=virtual, size=size)


def detect(read: Reader, size: int) -> str:
    """The format named by the headers; raw when none matches. Refuses formats Atoll does not take."""
    head = read(0, 512)
    for magic, name in _UNSUPPORTED.items():
        if head.startswith(magic):
            raise ImageRefused(reason=f"{name} images are not supported (accepted: {', '.join(FORMATS)})")
    if head.startswith(b"QFI\xfb"):
        return "qcow2"
    if head.startswith(b"KDMV") or head.startswith(b"# Disk DescriptorFile"):
        return "vmdk"
    if head.startswith(b"vhdxfile"):
        return "vhdx"
    if head.startswith(b"conectix"):
        return "vpc"
    if head[0x40:0x44] == b"\x7f\x10\xda\xbe":
        return "vdi"
    if size >= 0x8006 and read(0x8001, 5) == b"CD001":
        return "iso"
    if size >= 1024 and read(size - 512, 8) == b"conectix":
        return "vpc"  # a fixed VHD: raw data followed by the footer
    return "raw"


def _unpack(fmt: str, data: bytes, offset: int, what: str) -> int:
    try:
        value: int = struct.unpack_from(fmt, data, offset)[0]
    except struct.error:
        raise ImageRefused(reason=f"{what} header is truncated") from None
    return value


def _printable(raw: bytes) -> str:
    text = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 200 else text[:200] + "…"


# ---- qcow2 ---------------------------------------------------------------------------------------------
def _qcow2(read: Reader, size: int) -> int:
    h = read(0, 104)
    version = _unpack(">I", h, 4, "qcow2")
    backing_offset, backing_len = _unpack(">Q", h, 8, "qcow2"), _unpack(">I", h, 16, "qcow2")
    cluster_bits, virtual = _unpack(">I", h, 20, "qcow2"), _unpack(">Q", h, 24, "qcow2")
    if version not in (2, 3):
        raise ImageRefused(reason=f"qcow2 version {version} is not supported")
    if backing_offset or backing_len:
        name = _printable(read(backing_offset, min(backing_len, 1023)))
        raise ImageRefused(
            reason=f"the qcow2 image names a backing file ({name!r}): upload a self-contained image "
            "(qemu-img convert -O qcow2 flattens it)"
        )
    if _unpack(">I", h, 32, "qcow2"):
        raise ImageRefused(reason="encrypted qcow2 images are not supported")
    if not 9 <= cluster_bits <= 21:
        raise ImageRefused(reason=f"qcow2 cluster_bits {cluster_bits} is out of range")
    incompatible = _unpack(">Q", h, 72, "qcow2") if version == 3 else 0
    _qcow2_extensions(read, _unpack(">I", h, 100, "qcow2") if version == 3 else 72, 1 << cluster_bits)
    if incompatible & _QCOW2_INCOMPAT_DATA_FILE:
        raise ImageRefused(reason="the qcow2 image keeps its data in an external data file")
    if incompatible & _QCOW2_INCOMPAT_CORRUPT:
        raise ImageRefused(reason="the qcow2 image is marked corrupt")
    return virtual


def _qcow2_extensions(read: Reader, start: int, cluster: int) -> None:
    """Walk the header extensions (they live in the first cluster); refuse an external data file name."""
    data = read(0, cluster)
    pos = start
    while pos + 8 <= len(data):
        kind, length = struct.unpack_from(">II", data, pos)
        if kind == 0:
            return
        if kind == _QCOW2_DATA_FILE_EXT:
            name = _printable(data[pos + 8 : pos + 8 + length])
            raise ImageRefused(reason=f"the qcow2 image names an external data file ({name!r})")
        pos += 8 + (length + 7) // 8 * 8


# ---- vmdk ----------------------------------------------------------------------------------------------
def _vmdk(read: Reader, size: int) -> int:
    head = read(0, 512)
    if not head.startswith(b"KDMV"):
        raise ImageRefused(
            reason="a vmdk descriptor file keeps its extents in other files, outside the upload: upload a "
            f"single-file vmdk ({' or '.join(_VMDK_TYPES)})"
        )
    capacity = _unpack("<Q", head, 12, "vmdk")
    desc_sector, desc_sectors = _unpack("<Q", head, 28, "vmdk"), _unpack("<Q", head, 36, "vmdk")
    if not desc_sector or not 0 < desc_sectors <= 2048:
        raise ImageRefused(reason="the vmdk has no usable embedded descriptor")
    _check_vmdk_descriptor(read(desc_sector * 512, desc_sectors * 512).split(b"\0", 1)[0])
    return capacity * 512


def _check_vmdk_descriptor(raw: bytes) -> None:
    extents = []
    for line in raw.decode("ascii", "replace").splitlines():
        line = line.strip()
        key, _, value = (part.strip().strip('"') for part in line.partition("="))
        if key == "createType" and value not in _VMDK_TYPES:
            raise ImageRefused(
                reason=f"vmdk type {value!r} keeps data outside the upload (accepted: "
                f"{', '.join(_VMDK_TYPES)})"
            )
        if (key == "parentCID" and value.lower() != "ffffffff") or key == "parentFileNameHint":
            raise ImageRefused(reason="the vmdk is a delta disk that depends on a parent file")
        match = _VMDK_EXTENT.match(line)
        if match:
            extents.append((match.group(3), match.group(4) or ""))
    if len(extents) != 1:
        raise ImageRefused(reason=f"the vmdk lists {len(extents)} extents; a single-file vmdk has one")
    kind, name = extents[0]
    if kind != "SPARSE" or "/" in name or "\\" in name:
        raise ImageRefused(
            reason=f"the vmdk extent ({kind} {_printable(name.encode())!r}) points outside the upload"
        )


# ---- vhdx, vpc, vdi ------------------------------------------------------------------------------------
def _vhdx_table(data: bytes, start: int, count: int, what: str) -> dict[uuid.UUID, tuple[int, int, int]]:
    """``{guid: (offset, length, flags)}`` of a region table (u64 offsets) or metadata table (u32)."""
    entries: dict[uuid.UUID, tuple[int, int, int]] = {}
    for i in range(count):
        pos = start + 32 * i
        if pos + 32 > len(data):
            raise ImageRefused(reason=f"the vhdx {what} table is truncated")
        guid = uuid.UUID(bytes_le=data[pos : pos + 16])
        if what == "region":
            offset, length, flags = struct.unpack_from("<QII", data, pos + 16)
        else:
            offset, length, flags = struct.unpack_from("<III", data, pos + 16)
        entries[guid] = (offset, length, flags)
    return entries


def _vhdx(read: Reader, size: int) -> int:
    regions_raw = read(0x30000, 0x10000)
    if regions_raw[:4] != b"regi":
        raise ImageRefused(reason="the vhdx region table is missing")
    regions = _vhdx_table(regions_raw, 16, min(_unpack("<I", regions_raw, 8, "vhdx"), 2047), "region")
    if _VHDX_METADATA not in regions:
        raise ImageRefused(reason="the vhdx has no metadata region")
    base = regions[_VHDX_METADATA][0]
    table = read(base, 0x10000)
    if table[:8] != b"metadata":
        raise ImageRefused(reason="the vhdx metadata table is missing")
    items = _vhdx_table(table, 32, min(_unpack("<H", table, 10, "vhdx"), 2047), "metadata")
    if _VHDX_PARENT_LOCATOR in items:
        raise ImageRefused(reason="the vhdx is a differencing disk that depends on a parent file")
    if _VHDX_FILE_PARAMS in items:
        flags = _unpack("<I", read(base + items[_VHDX_FILE_PARAMS][0], 8), 4, "vhdx")
        if flags & 2:
            raise ImageRefused(reason="the vhdx is a differencing disk that depends on a parent file")
    if _VHDX_VIRTUAL_SIZE not in items:
        raise ImageRefused(reason="the vhdx does not state its virtual size")
    return _unpack("<Q", read(base + items[_VHDX_VIRTUAL_SIZE][0], 8), 0, "vhdx")


def _vpc(read: Reader, size: int) -> int:
    head = read(0, 512)
    footer = head if head.startswith(b"conectix") else read(size - 512, 512)
    disk_type = _unpack(">I", footer, 60, "vpc")
    if disk_type == 4:
        raise ImageRefused(reason="the vhd is a differencing disk that depends on a parent file")
    if disk_type not in (2, 3):
        raise ImageRefused(reason=f"vhd disk type {disk_type} is not supported")
    current = _unpack(">Q", footer, 48, "vpc")
    cylinders, heads, sectors = struct.unpack_from(">HBB", footer, 56)
    return max(current, cylinders * heads * sectors * 512)


def _vdi(read: Reader, size: int) -> int:
    header = read(0, 0x180)
    image_type = _unpack("<I", header, 0x4C, "vdi")
    if image_type == 4:
        raise ImageRefused(reason="the vdi is a differencing disk that depends on a parent file")
    if image_type not in (1, 2):
        raise ImageRefused(reason=f"vdi image type {image_type} is not supported")
    return _unpack("<Q", header, 0x170, "vdi")


def _as_is(read: Reader, size: int) -> int:
    return size


_VIRTUAL_SIZE: dict[str, Callable[[Reader, int], int]] = {
    "raw": _as_is,
    "iso": _as_is,
    "qcow2": _qcow2,
    "vmdk": _vmdk,
    "vhdx": _vhdx,
    "vpc": _vpc,
    "vdi": _vdi,
}
