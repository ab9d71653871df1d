"""Fixtures for the Volume API: stores per project (non-admin users act as projects), a guest image."""

from __future__ import annotations

from pathlib import Path

import pytest

from provider.services import Store
from tests.conftest import StoreEnv, make_store_env, write_disk
from tests.helpers import need_root, need_tools
from tests.images import build

PROPS = {"OSFAMILY": "linux", "ROOT_PARTITION": "1"}


@pytest.fixture(params=["qcow2", "reflink"])
def api_env(request: pytest.FixtureRequest, tmp_path: Path) -> StoreEnv:
    """A fresh store (SQLite catalog) on each file backend; the reflink one on a loop-mounted XFS."""
    if request.param == "reflink":
        path = request.getfixturevalue("xfs_mount") / tmp_path.name
    else:
        path = tmp_path / "store"
    return make_store_env(request.param, path, "")


@pytest.fixture
def alice(api_env: StoreEnv) -> Store:
    return api_env.open("alice", admin=False)


@pytest.fixture
def bob(api_env: StoreEnv) -> Store:
    return api_env.open("bob", admin=False)


@pytest.fixture
def admin(api_env: StoreEnv) -> Store:
    return api_env.open("admin", admin=True)


@pytest.fixture(scope="session")
def guest_image() -> Path:
    """A GPT/ext4 test disk (root partition 1, host name 'template'), built once and cached."""
    need_root()
    need_tools("sfdisk", "mkfs.ext4", "debugfs", "e2fsck")
    path, _info = build.cached(build.ImageSpec(size=1 << 30))
    return path


def add_image(store: Store, disk: Path, name: str, properties: dict[str, str] | None = None) -> str:
    """Upload ``disk`` and register it as image ``name``; return its id."""
    with open(disk, "rb") as f:
        obj = store.objects.upload(f"images/{name}.raw", f)
    return store.images.register(obj.id, name, properties=properties if properties is not None else PROPS).id


def add_snapshot_image(store: Store, tmp_path: Path, name: str = "blob") -> str:
    """A plain pattern disk registered as a Snapshot (clones of it run no task)."""
    disk = write_disk(tmp_path / f"{name}.raw", 32 << 20)
    return add_image(store, disk, name, {"EXCLUDE_ALL_TASKS": "yes"})
