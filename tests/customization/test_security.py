"""Hostile images: symlinks aimed at the host, a corrupt table, a partition past the end, a dirty journal.
Each gives a clear error or a correct result, and nothing is written outside the guest."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from customization import engine
from customization.errors import CustomizationError, DiskError
from customization.params import InstanceParams, Secret
from tests.customization import verify
from tests.customization.conftest import MakeImage

BACKENDS = [("ext4", "debugfs"), ("ext4", "mount"), ("xfs", "auto"), ("btrfs", "auto")]


@pytest.fixture
def host_bait(tmp_path: Path) -> dict[str, Path]:
    """Host files and a host directory that a hostile image points its symlinks at."""
    bait = tmp_path / "host"
    (bait / "sshdir").mkdir(parents=True, mode=0o755)
    (bait / "hostname").write_text("HOST-HOSTNAME\n")
    (bait / "shadow").write_text("root:HOST-SHADOW:1::::::\n")
    return {"dir": bait / "sshdir", "hostname": bait / "hostname", "shadow": bait / "shadow"}


def _snapshot(bait: dict[str, Path]) -> dict[str, tuple[int, bytes | list[str]]]:
    out: dict[str, tuple[int, bytes | list[str]]] = {}
    for name, path in bait.items():
        st = path.stat()
        out[name] = (st.st_mode, sorted(os.listdir(path)) if path.is_dir() else path.read_bytes())
    return out


def _hostile(make_image: MakeImage, fs: str, links: dict[str, Path]) -> tuple[Path, Callable[[Path], None]]:
    def hook(tree: Path) -> None:
        for guest_path, target in links.items():
            victim = tree / guest_path.lstrip("/")
            if victim.is_dir() and not victim.is_symlink():
                victim.rmdir() if not any(victim.iterdir()) else None
            victim.unlink(missing_ok=True) if not victim.is_dir() else None
            victim.symlink_to(target)

    return Path(make_image(fs=fs, hook=hook).path), hook


@pytest.mark.parametrize(("fs", "backend"), BACKENDS)
@pytest.mark.parametrize(
    ("guest_path", "bait_name", "params", "expected"),
    [
        ("/etc/hostname", "hostname", InstanceParams(hostname="vm1"),
         "refusing to write /etc/hostname: it is a symbolic link"),
        ("/etc/shadow", "shadow", InstanceParams(password=Secret("pw")),
         r"/etc/shadow: /tmp\S* does not exist in the guest"),
        ("/root/.ssh", "dir", None, "refusing to use /root/.ssh: it is a symbolic link"),
    ],
)  # fmt: skip
def test_symlink_to_the_host_never_gets_written(
    make_image: MakeImage,
    host_bait: dict[str, Path],
    ssh_keypair: tuple[Path, str],
    fs: str,
    backend: str,
    guest_path: str,
    bait_name: str,
    params: InstanceParams | None,
    expected: str,
) -> None:
    disk, _ = _hostile(make_image, fs, {guest_path: host_bait[bait_name]})
    params = params or InstanceParams(ssh_keys=(ssh_keypair[1],))
    before = _snapshot(host_bait)
    leftovers = verify.leftovers()
    with pytest.raises(CustomizationError) as err:
        engine.customize(disk, {"EXCLUDE_TASK_DeleteSSHKeys": "yes"}, params, backend=backend)  # type: ignore[arg-type]
    assert re.search(expected, str(err.value)), str(err.value)
    assert _snapshot(host_bait) == before
    assert verify.leftovers() == leftovers


@pytest.mark.parametrize(("fs", "backend"), BACKENDS)
def test_symlinked_parent_directories_resolve_inside_the_guest(
    make_image: MakeImage, host_bait: dict[str, Path], fs: str, backend: str
) -> None:
    # /etc/ssh -> an absolute host path that also exists in the guest; /home -> ../../../../var/home.
    def hook(tree: Path) -> None:
        real = tree / str(host_bait["dir"]).lstrip("/")
        real.mkdir(parents=True)
        (tree / "etc/ssh").rename(real / "ssh")
        (tree / "etc/ssh").symlink_to(str(host_bait["dir"] / "ssh"))
        (tree / "var/home").mkdir(parents=True)
        (tree / "home").rename(tree / "var/home2")
        (tree / "var/home2").rename(tree / "var/home/x")
        (tree / "home").symlink_to("../../../../var/home/x")

    info = make_image(fs=fs, hook=hook)
    before = _snapshot(host_bait)
    params = InstanceParams(hostname="vm", password=Secret("pw"))
    report = engine.customize(info.path, {"USERS": "user"}, params, backend=backend)  # type: ignore[arg-type]
    assert report.ok
    assert _snapshot(host_bait) == before
    with verify.guest_root(Path(info.path), 1, fs) as root:
        keys = sorted(p.name for p in (root / str(host_bait["dir"]).lstrip("/") / "ssh").glob("ssh_host_*"))
        assert len(keys) == 6  # regenerated inside the guest, through the guest's own symlink
        assert (root / "etc/hostname").read_text() == "vm\n"


def test_corrupt_partition_table_is_a_clear_error(make_image: MakeImage) -> None:
    info = make_image()
    disk = Path(info.path)
    with open(disk, "r+b") as f:
        f.seek(512)
        f.write(os.urandom(512))
        f.seek(disk.stat().st_size - 512)
        f.write(os.urandom(512))
    before = verify.digest(disk)
    with pytest.raises(DiskError, match="protective MBR without a valid GPT"):
        engine.customize(disk, {}, InstanceParams(hostname="vm"), grow_to=2 << 30)
    assert verify.digest(disk) == before


def test_no_partition_table_is_a_clear_error(tmp_path: Path) -> None:
    disk = tmp_path / "blank.img"
    disk.write_bytes(b"\0" * (4 << 20))
    with pytest.raises(DiskError, match="no readable partition table"):
        engine.customize(disk, {}, InstanceParams(hostname="vm"))


@pytest.mark.parametrize("table", ["gpt", "mbr"])
def test_partition_past_the_end_of_the_disk(make_image: MakeImage, table: str) -> None:
    info = make_image(table=table)
    disk = Path(info.path)
    os.truncate(disk, 512 << 20)  # the image lost its tail: the root partition now runs past the end
    before = verify.digest(disk)
    # MBR: the partition runs past the end. GPT: the header itself no longer fits, only the PMBR is left.
    expected = "lies past the end of the 1048576-sector disk" if table == "mbr" else "truncated disk"
    with pytest.raises(DiskError, match=expected):
        engine.customize(disk, {}, InstanceParams(hostname="vm"), grow_to=2 << 30)
    assert verify.digest(disk) == before


@pytest.mark.parametrize("backend", ["debugfs", "mount"])
def test_dirty_journal_is_replayed_before_editing(make_image: MakeImage, backend: str) -> None:
    info = make_image(dirty=True)
    disk = Path(info.path)
    assert "needs_recovery" in verify.sh("dumpe2fs", "-h", f"{disk}?offset={info.offset}").stdout
    report = engine.customize(disk, {}, InstanceParams(hostname="after-crash"), grow_to=2 << 30,
                              backend=backend)  # type: ignore[arg-type]  # fmt: skip
    assert report.ok
    verify.assert_fs_clean(disk, 1, "ext4")
    verify.assert_fills_partition(disk, 1, "ext4")
    assert "needs_recovery" not in verify.sh("dumpe2fs", "-h", f"{disk}?offset={info.offset}").stdout
    with verify.guest_root(disk, 1, "ext4") as root:
        assert (root / "etc/journaled").read_text() == "written before the crash\n"  # replayed, not dropped
        assert (root / "etc/hostname").read_text() == "after-crash\n"


def test_mount_options_are_nosuid_nodev_noexec(
    make_image: MakeImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from customization.guestfs import loop

    seen: list[str] = []
    real = loop.mount

    def spy(device: str, fstype: str, target: str, extra: tuple[str, ...] = ()) -> None:
        real(device, fstype, target, extra)
        seen.append(next(ln for ln in Path("/proc/mounts").read_text().splitlines() if f" {target} " in ln))

    monkeypatch.setattr(loop, "mount", spy)
    info = make_image(fs="btrfs")
    engine.customize(info.path, {}, InstanceParams(hostname="vm"))
    options = seen[0].split()[3].split(",")
    assert {"nosuid", "nodev", "noexec"} <= set(options)
