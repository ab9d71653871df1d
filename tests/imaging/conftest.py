"""Disk images in every accepted format, built by the real ``qemu-img`` from one raw disk, and hostile
ones (a backing file, an external data file, a petabyte, a descriptor pointing outside the upload)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from provider import config as config_mod
from tests.conftest import StoreEnv
from tests.helpers import need_tools

MIB = 1 << 20


def qemu_img(*args: str | Path) -> None:
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


def make_raw(path: Path, size: int = 64 * MIB, data_at: int = 10 * MIB, data: int = 3 * MIB) -> Path:
    """A sparse raw disk with ``data`` random bytes at ``data_at`` and a marker in the first sector."""
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(b"ATOLL-TEST-DISK\n")
        f.seek(data_at)
        f.write(os.urandom(data))
    return path


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_samples(tmp_path_factory.mktemp("samples"))


def build_samples(d: Path) -> dict[str, Path]:
    """``{name: path}``: the raw source, one good image per format and the hostile ones."""
    need_tools("qemu-img")
    raw = make_raw(d / "disk.raw")
    out = {"raw": raw}
    for fmt in ("qcow2", "vmdk", "vhdx", "vpc", "vdi"):
        out[fmt] = d / f"disk.{fmt}"
        qemu_img("convert", "-f", "raw", "-O", fmt, raw, out[fmt])
    out["vmdk-stream"] = d / "stream.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, out["vmdk-stream"])
    out["vpc-fixed"] = d / "fixed.vhd"
    qemu_img("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed", raw, out["vpc-fixed"])
    out["qcow2-v2"] = d / "v2.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "compat=0.10", raw, out["qcow2-v2"])
    out["backing"] = d / "backing.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-u", "-b", "/etc/shadow", "-F", "raw", out["backing"], "64M")
    out["data-file"] = d / "data-file.qcow2"
    qemu_img(
        "create", "-q", "-f", "qcow2", "-o", f"data_file={d / 'outside.raw'},data_file_raw=on",
        out["data-file"], "64M",
    )  # fmt: skip
    out["huge"] = d / "huge.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", out["huge"], "1P")
    out["vmdk-descriptor"] = d / "flat.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", out["vmdk-descriptor"], "64M")
    out["vmdk-delta"] = d / "delta.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", "-b", out["vmdk"], "-F", "vmdk", out["vmdk-delta"], "64M")
    out["iso"] = d / "disk.iso"
    with open(out["iso"], "wb") as f:
        f.truncate(1 * MIB)
        f.seek(0x8000)
        f.write(b"\x01CD001\x01")
    return out


def imports_env(path: Path, imports: dict[str, object] | None = None, backend: str = "qcow2") -> StoreEnv:
    """A fresh store (SQLite catalog) with an ``imports:`` section."""
    path.mkdir(parents=True, exist_ok=True)
    raw = {
        "store": {"backend": backend, "path": str(path)},
        "auth": {"admins": ["root", "admin"]},
        "imports": imports or {},
    }
    config_path = path / "atoll.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    return StoreEnv(config_path, config_mod.load(config_path), backend)


@pytest.fixture
def ienv(tmp_path: Path) -> StoreEnv:
    return imports_env(tmp_path / "store", {"max_virtual_size": "1G", "allow_networks": ["127.0.0.1/32"]})
