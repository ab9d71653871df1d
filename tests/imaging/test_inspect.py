"""The format inspector: every accepted format detected with its virtual size; every unsafe or
mislabelled image refused with the reason, before any tool opens it."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from provider.imaging.inspect import ImageRefused, Inspection, detect, inspect, inspect_file

MIB = 1 << 20
LIMIT = 4 << 40


def check(path: Path, declared: str | None = None, limit: int = LIMIT) -> Inspection:
    return inspect_file(path, declared=declared, max_virtual_size=limit)


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("raw", "raw"),
        ("qcow2", "qcow2"),
        ("qcow2-v2", "qcow2"),
        ("vmdk", "vmdk"),
        ("vmdk-stream", "vmdk"),
        ("vhdx", "vhdx"),
        ("vpc", "vpc"),
        ("vpc-fixed", "vpc"),
        ("vdi", "vdi"),
        ("iso", "iso"),
    ],
)
def test_detects_format_and_virtual_size(samples: dict[str, Path], name: str, fmt: str) -> None:
    found = check(samples[name])
    assert found.format == fmt
    assert found.size == samples[name].stat().st_size
    if name == "iso":
        assert found.virtual_size == found.size
        assert not found.needs_conversion
    elif fmt == "vpc":  # CHS geometry rounds up a little
        assert 64 * MIB <= found.virtual_size < 65 * MIB
    else:
        assert found.virtual_size == 64 * MIB
    assert found.needs_conversion == (fmt not in ("raw", "iso"))
    assert check(samples[name], declared=fmt).format == fmt


@pytest.mark.parametrize(
    "name, reason",
    [
        ("backing", "names a backing file ('/etc/shadow')"),
        ("data-file", "names an external data file ("),
        ("huge", "virtual size 1024.0 TiB (1125899906842624 bytes) is above the limit of 4.0 TiB"),
        ("vmdk-descriptor", "a vmdk descriptor file keeps its extents in other files, outside the upload"),
        ("vmdk-delta", "the vmdk is a delta disk that depends on a parent file"),
    ],
)
def test_refuses_hostile_images(samples: dict[str, Path], name: str, reason: str) -> None:
    with pytest.raises(ImageRefused) as err:
        check(samples[name])
    assert reason in str(err.value)
    assert str(err.value).startswith("image refused: ")


def test_external_data_file_bit_without_name(samples: dict[str, Path], tmp_path: Path) -> None:
    """The incompatible-feature bit alone is enough to refuse (the name extension stripped)."""
    img = tmp_path / "bit.qcow2"
    shutil.copy(samples["qcow2"], img)
    with open(img, "r+b") as f:
        f.seek(72)
        f.write(struct.pack(">Q", 1 << 2))
    with pytest.raises(ImageRefused, match="keeps its data in an external data file"):
        check(img)


@pytest.mark.parametrize(
    "declared, name, message",
    [
        ("raw", "qcow2", "declared raw but the data is a qcow2 image"),
        ("qcow2", "raw", "declared qcow2 but the data is a raw image"),
        ("vmdk", "vhdx", "declared vmdk but the data is a vhdx image"),
        ("iso", "raw", "declared iso but the data is a raw image"),
        ("ami", "raw", "disk format 'ami' is not one of raw, qcow2"),
    ],
)
def test_declared_format_must_match(samples: dict[str, Path], declared: str, name: str, message: str) -> None:
    with pytest.raises(ImageRefused, match=message):
        check(samples[name], declared=declared)


def test_iso_declared_raw_is_stored_as_raw(samples: dict[str, Path]) -> None:
    assert check(samples["iso"], declared="raw").format == "raw"


def test_limit_applies_to_raw_too(samples: dict[str, Path]) -> None:
    with pytest.raises(ImageRefused, match=r"above the limit of 32\.0 MiB"):
        check(samples["raw"], limit=32 * MIB)


@pytest.mark.parametrize(
    "head, name",
    [(b"QEF\x00", "qed"), (b"LUKS\xba\xbe", "luks"), (b"WithoutFreeSpace", "parallels"), (b"COWD", "vmdk3")],
)
def test_unsupported_formats(head: bytes, name: str) -> None:
    data = head + bytes(4096)
    with pytest.raises(ImageRefused, match=f"{name}.* images are not supported"):
        inspect(lambda o, n: data[o : o + n], len(data), max_virtual_size=LIMIT)


def _patched(src: Path, dst: Path, offset: int, data: bytes) -> Path:
    shutil.copy(src, dst)
    with open(dst, "r+b") as f:
        f.seek(offset)
        f.write(data)
    return dst


def test_differencing_disks_refused(samples: dict[str, Path], tmp_path: Path) -> None:
    vdi = _patched(samples["vdi"], tmp_path / "diff.vdi", 0x4C, struct.pack("<I", 4))
    with pytest.raises(ImageRefused, match="the vdi is a differencing disk"):
        check(vdi)
    vhd = _patched(samples["vpc"], tmp_path / "diff.vhd", 60, struct.pack(">I", 4))
    with pytest.raises(ImageRefused, match="the vhd is a differencing disk"):
        check(vhd)


def test_vmdk_embedded_extent_outside_upload(samples: dict[str, Path], tmp_path: Path) -> None:
    """A sparse vmdk whose embedded descriptor names a FLAT extent on a host path."""
    src = samples["vmdk"].read_bytes()
    desc_at = struct.unpack_from("<Q", src, 28)[0] * 512
    desc = src[desc_at : desc_at + 1024].split(b"\0", 1)[0]
    start = desc.index(b"RW ")
    end = desc.index(b"\n", start)
    hostile = desc[:start] + b'RW 131072 FLAT "/etc/shadow" 0' + desc[end:]
    img = _patched(samples["vmdk"], tmp_path / "hostile.vmdk", desc_at, hostile + b"\0" * 16)
    with pytest.raises(ImageRefused, match=r"extent \(FLAT '/etc/shadow'\) points outside the upload"):
        check(img)


def test_truncated_header(tmp_path: Path) -> None:
    img = tmp_path / "short.qcow2"
    img.write_bytes(b"QFI\xfb\x00\x00\x00\x03")
    with pytest.raises(ImageRefused, match="qcow2 header is truncated"):
        check(img)


def test_detect_never_reads_past_the_end() -> None:
    reads: list[tuple[int, int]] = []
    data = b"x" * 600

    def read(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return data[offset : offset + length]

    assert detect(read, len(data)) == "raw"
    assert all(offset < len(data) for offset, _ in reads)
