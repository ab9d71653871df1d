"""Fixtures for the customization tests: fresh copies of cached test images, an SSH key pair."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import need_root, need_tools
from tests.images import build

MakeImage = Callable[..., build.ImageInfo]


@pytest.fixture(scope="session")
def ssh_keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(private key path, public key line): an ed25519 pair made for this test session."""
    need_tools("ssh-keygen")
    key = tmp_path_factory.mktemp("keys") / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "atoll-test", "-f", str(key)], check=True
    )
    return key, key.with_suffix(".pub").read_text().strip()


@pytest.fixture
def make_image(tmp_path: Path) -> MakeImage:
    """Build (or copy from the cache) a test image into tmp_path and describe it."""

    def make(
        kind: str = "synthetic",
        table: str = "gpt",
        fs: str = "ext4",
        layout: str = "root",
        size: int = 1 << 30,
        dirty: bool = False,
        hook: build.TreeHook | None = None,
        name: str = "disk.img",
    ) -> build.ImageInfo:
        need_root()
        need_tools("sfdisk", "partx", "mkfs.ext4", "debugfs", "mkfs.xfs", "mkfs.btrfs", "mkfs.fat", "losetup")
        if kind != "synthetic":
            need_tools("debootstrap")
        spec = build.ImageSpec(kind, table, fs, layout, size, dirty)
        out = tmp_path / name
        if hook is not None:
            return build.build(spec, out, hook)
        pristine, info = build.cached(spec)
        build.copy(pristine, out)
        return build.ImageInfo(str(out), info.table, info.fs, info.root_partition, info.offset, info.bytes,
                               info.fs_uuid, info.disk_id)  # fmt: skip

    return make
