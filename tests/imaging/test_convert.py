"""``qemu-img convert`` with direct I/O (what a file store's import uses): the same raw bytes, the same
holes, as the buffered conversion; direct I/O only where the filesystem takes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from provider.imaging.convert import ConversionFailed, Limits, convert, direct_io
from tests.imaging.conftest import MIB

LIMITS = Limits(timeout=60, memory=1 << 30)


@pytest.mark.parametrize("sample", ["qcow2", "vmdk", "vhdx"])
def test_direct_conversion_gives_the_buffered_bytes_and_holes(
    samples: dict[str, Path], tmp_path: Path, sample: str
) -> None:
    assert direct_io(tmp_path), "the test directory's filesystem takes O_DIRECT"
    buffered, direct = tmp_path / "buffered.raw", tmp_path / "direct.raw"
    steps: list[float] = []
    convert(str(samples[sample]), sample, buffered, LIMITS)
    convert(str(samples[sample]), sample, direct, LIMITS, direct=True, progress=steps.append)
    assert direct.read_bytes() == buffered.read_bytes() == samples["raw"].read_bytes()
    assert direct.stat().st_blocks * 512 < 8 * MIB, "holes stay holes: only the data is written"
    assert steps and steps[-1] == 100.0


def test_direct_io_refused_where_the_filesystem_cannot(tmp_path: Path) -> None:
    assert not direct_io(Path("/proc")), "procfs takes no O_DIRECT file"
    assert not direct_io(tmp_path / "missing")


def test_failed_direct_conversion_leaves_no_target(tmp_path: Path) -> None:
    bad = tmp_path / "bad.qcow2"
    bad.write_bytes(b"QFI\xfb" + b"\0" * 508)
    target = tmp_path / "out.raw"
    with pytest.raises(ConversionFailed):
        convert(str(bad), "qcow2", target, LIMITS, direct=True)
    assert not target.exists()


def test_direct_conversion_fits_a_small_address_space(samples: dict[str, Path], tmp_path: Path) -> None:
    """qemu-img's I/O threads under -t none -W: with glibc's default malloc arenas (64 MiB of address
    space each, one per allocating thread) thread creation failed below ~600 MiB; two arenas fit 400."""
    target = tmp_path / "direct.raw"
    convert(str(samples["vmdk"]), "vmdk", target, Limits(timeout=60, memory=400 << 20), direct=True)
    assert target.stat().st_size > 0
