"""Concurrent processes on rbd stores, on each catalog (tests/store/test_cli.py: the file backends)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from provider import config
from provider.errors import CatalogError, InUse
from provider.services.base import res_key
from tests import daemons
from tests.conftest import StoreEnv, make_store_env, rbd_store_keys, write_disk

PARALLEL = 8


def test_parallel_clones_of_one_image_all_succeed(rbd_env: StoreEnv, tmp_path: Path) -> None:
    cenv = rbd_env
    disk = write_disk(tmp_path / "base.raw", 16 << 20)
    cenv.cli("object", "upload", "images/base.raw", str(disk))
    cenv.cli("image", "register", "images/base.raw", "--name", "base")
    env = {**os.environ, "ATOLL_CONFIG": str(cenv.config_path)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "provider",
                "volume",
                "create",
                f"vm{i}",
                "--from",
                "base",
                "--no-customize",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(PARALLEL)
    ]
    results = [(p.wait(timeout=300), p.stderr.read().decode() if p.stderr else "") for p in procs]
    for p in procs:
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()
    assert [rc for rc, _ in results] == [0] * PARALLEL, [err for rc, err in results if rc]
    volumes = cenv.json("volume", "list")
    assert sorted(v["name"] for v in volumes) == [f"vm{i}" for i in range(PARALLEL)]
    assert {v["parent"] for v in volumes} == {cenv.json("image", "show", "base")["id"]}
    report = cenv.json("fsck")
    assert report["clean"], report


def test_resource_locks_span_hosts_sharing_a_postgresql_catalog(
    tmp_path: Path, postgres_url: str, ceph_conf: str
) -> None:
    """Two nodes (own store directories, so own file locks) serialize operations on one volume."""
    catalog = daemons.new_schema(postgres_url)
    keys = rbd_store_keys(ceph_conf)
    node_a, node_b = (make_store_env("rbd", tmp_path / n, catalog, store=keys).open() for n in ("a", "b"))
    vol = node_a.volumes.create("shared", size=1 << 20)
    with (
        node_a.volumes.lock(vol.id),
        pytest.raises(InUse, match="an operation on another host holds its lock"),
        node_b.volumes.lock(vol.id, wait=0.3),
    ):
        pass
    with node_b.volumes.lock(vol.id, wait=0.3):
        pass


def test_postgresql_writes_lock_one_resource_not_the_catalog(tmp_path: Path, postgres_url: str) -> None:
    """While one transaction holds volume A's lock, writes on other resources (Ganeti metadata, image
    properties and members, object metadata) go through at once; a write on A waits and times out, and
    so does a catalog-wide write (a new project)."""
    catalog = daemons.new_schema(postgres_url)
    env = make_store_env("qcow2", tmp_path / "store", catalog)
    raw = yaml.safe_load(env.config_path.read_text())
    raw["catalog"]["busy_timeout"] = 0.5
    env.config_path.write_text(yaml.safe_dump(raw))
    env = StoreEnv(env.config_path, config.load(env.config_path), env.backend)
    store, other = env.open(), env.open()
    with open(write_disk(tmp_path / "base.raw", 1 << 20), "rb") as f:
        store.objects.upload("images/base.raw", f)
    image = store.images.register("images/base.raw", "base")
    a, b = (store.volumes.create(n, size=1 << 20) for n in ("a", "b"))
    with store.catalog.write(res_key(a.id)):
        vol_b = other.volumes.set_ganeti("b", {"instance": "vm-b"})
        assert vol_b.volume is not None and vol_b.volume.ganeti["instance"] == "vm-b"
        changed = other.images.set("base", set_props={"OSFAMILY": "linux"})
        assert changed.image is not None and changed.image.properties["OSFAMILY"] == "linux"
        other.images.add_member(image.id, "tenant2")
        other.objects.set_meta("images/base.raw", {"origin": "test"}, [])
        with pytest.raises(CatalogError):
            other.volumes.set_ganeti("a", {"instance": "vm-a"})
        with pytest.raises(CatalogError):
            other.identity.create_project("p2")
    vol_a = other.volumes.set_ganeti(a.id, {"instance": "vm-a"})  # the lock is gone: it goes through
    assert vol_a.volume is not None and vol_a.volume.ganeti["instance"] == "vm-a"
    assert [v.name for v in other.volumes.list()] == ["a", "b"] and b.id != a.id
