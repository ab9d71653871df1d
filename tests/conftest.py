"""Shared pytest fixtures: store configurations on each backend, a loop-mounted XFS, a CLI runner.

The skip-or-fail rule for missing dependencies lives in tests/helpers.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from provider import config as config_mod
from provider.services import Caller, Store
from tests import daemons
from tests.helpers import need, need_root, need_tools

FILE_BACKENDS = ["qcow2", "reflink"]
ALL_BACKENDS = [*FILE_BACKENDS, "rbd"]
CATALOGS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def xfs_mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A loop-mounted XFS with reflink=1 (what the reflink backend needs); root only."""
    need_root()
    need_tools("mkfs.xfs", "losetup", "mount")
    base = tmp_path_factory.mktemp("xfs")
    image, mnt = base / "xfs.img", base / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(8 << 30)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        image.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for catalogs: ``$ATOLL_TEST_CATALOG_URL`` when it names one, else a private
    cluster on loopback started by scripts/postgres-test.sh for the session."""
    given = os.environ.get("ATOLL_TEST_CATALOG_URL", "")
    if given.startswith("postgres"):
        yield given
        return
    with daemons.postgres() as server:
        need(server.ok, server.error)
        yield server.exports["ATOLL_PG_URL"]


@pytest.fixture(params=CATALOGS)
def catalog_url(request: pytest.FixtureRequest) -> str:
    """The catalog the store fixtures use: empty means SQLite inside the store directory; on PostgreSQL
    each test gets a fresh schema."""
    if request.param == "sqlite":
        return ""
    return daemons.new_schema(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def ceph_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Ceph cluster's configuration file: ``$ATOLL_TEST_CEPH_CONF``, else a micro Ceph started by
    scripts/micro-ceph.sh for the session (its pool is ``$ATOLL_TEST_CEPH_POOL``, default atoll)."""
    given = os.environ.get("ATOLL_TEST_CEPH_CONF")
    if given:
        yield given
        return
    need(importlib.util.find_spec("rbd") is not None, "needs python3-rbd (run scripts/install-deps.sh)")
    with daemons.micro_ceph(tmp_path_factory.mktemp("micro-ceph")) as cluster:
        need(cluster.ok, cluster.error)
        conf = cluster.exports["CEPH_CONF"]
        os.environ["ATOLL_TEST_CEPH_CONF"] = conf
        try:
            yield conf
        finally:
            os.environ.pop("ATOLL_TEST_CEPH_CONF", None)


def rbd_store_keys(ceph_conf: str) -> dict[str, str]:
    """store: keys for a fresh rbd store: the test pool, and an RBD namespace of its own."""
    return {
        "pool": os.environ.get("ATOLL_TEST_CEPH_POOL", "atoll"),
        "ceph_conf": ceph_conf,
        "namespace": f"t-{uuid.uuid4().hex[:12]}",
    }


def _store_dir(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    if backend == "reflink":
        mnt: Path = request.getfixturevalue("xfs_mount")
        path = mnt / tmp_path.name
        request.addfinalizer(lambda: subprocess.run(["rm", "-rf", str(path)], check=False))
        return path
    return tmp_path / "store"


@dataclass
class StoreEnv:
    """A store configuration written to disk, usable in-process (``store``) and through the CLI."""

    config_path: Path
    config: config_mod.Config
    backend: str

    def open(self, user: str = "root", admin: bool | None = None) -> Store:
        admin = user in self.config.auth.admins if admin is None else admin
        return Store.open(self.config, Caller(user, admin))

    def cli(self, *args: str, user: str | None = None, input: bytes | None = None, check: bool = True):  # type: ignore[no-untyped-def]
        env = {**os.environ, "ATOLL_CONFIG": str(self.config_path)}
        if user:
            env["ATOLL_USER"] = user
        proc = subprocess.run(
            [sys.executable, "-m", "provider", *args], env=env, input=input, capture_output=True, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"atoll {' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode()}")
        return proc

    def json(self, *args: str, user: str | None = None):  # type: ignore[no-untyped-def]
        return json.loads(self.cli("-o", "json", *args, user=user).stdout)


def make_store_env(
    backend: str, path: Path, catalog_url: str, schema_prefix: str = "", store: dict[str, str] | None = None
) -> StoreEnv:
    path.mkdir(parents=True, exist_ok=True)
    raw = {
        "store": {"backend": backend, "path": str(path), **(store or {})},
        "auth": {"admins": ["root", "admin"]},
    }
    if catalog_url:
        raw["catalog"] = {"url": catalog_url}
    config_path = path / "atoll.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    return StoreEnv(config_path, config_mod.load(config_path), backend)


def backend_env(backend: str, request: pytest.FixtureRequest, tmp_path: Path, catalog_url: str) -> StoreEnv:
    """A fresh store on ``backend``: reflink on a loop-mounted XFS, rbd in a namespace of its own."""
    if backend == "rbd":
        keys = rbd_store_keys(request.getfixturevalue("ceph_conf"))
        return make_store_env(backend, tmp_path / "store", catalog_url, store=keys)
    return make_store_env(backend, _store_dir(backend, tmp_path, request), catalog_url)


@pytest.fixture(params=FILE_BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path: Path, catalog_url: str) -> StoreEnv:
    """A fresh store on each file backend (the reflink one on a loop-mounted XFS)."""
    return backend_env(request.param, request, tmp_path, catalog_url)


@pytest.fixture
def rbd_env(request: pytest.FixtureRequest, tmp_path: Path, catalog_url: str) -> StoreEnv:
    """A fresh store on the rbd backend, on each catalog."""
    return backend_env("rbd", request, tmp_path, catalog_url)


@pytest.fixture
def qcow2_env(tmp_path: Path, catalog_url: str) -> StoreEnv:
    return make_store_env("qcow2", tmp_path / "store", catalog_url)


@pytest.fixture
def store(env: StoreEnv) -> Store:
    return env.open()


def write_disk(path: Path, size: int, pattern: bytes = b"atoll", every: int = 1 << 20) -> Path:
    """A sparse test disk with ``pattern`` stamped every ``every`` bytes (so content is checkable)."""
    with open(path, "wb") as f:
        f.truncate(size)
        for off in range(0, size, every):
            f.seek(off)
            f.write(pattern + off.to_bytes(8, "little"))
    return path


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    return write_disk(tmp_path / "disk.raw", 32 << 20)
