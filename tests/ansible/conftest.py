"""Fixtures for the rollout tests: the playbook applied to this machine, in a private root.

The target host is the local machine over Ansible's local connection, as root: packages go into the
real system (they are already there in CI, so apt changes nothing), while the virtualenv, the
configuration, the store and the Ganeti directories live under a temporary root given as variables,
so the developer's own /etc/atoll, /opt/atoll and /var/lib/atoll are never touched. Only the Ganeti
checks (test_ganeti.py) write Ganeti's real directories, because the test cluster searches those; what
was there is put back afterwards. The role builds Atoll from a snapshot of the checkout's package
sources, so edits made to the work tree while the tests run cannot make a second run reinstall.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from tests import daemons
from tests.ansible.playbook import REPO, Run, role_defaults, run_playbook, tool
from tests.helpers import need, need_root, need_tools

if TYPE_CHECKING:
    from testinfra.host import Host


@dataclass(frozen=True)
class Node:
    """A playbook applied to this machine with ``variables``: its runs, and the paths used."""

    root: Path
    variables: dict[str, object]
    runs: tuple[Run, ...]

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def second(self) -> Run:
        return self.runs[1]

    def var(self, name: str) -> str:
        return str(self.variables[name])

    @property
    def atoll(self) -> str:
        return f"{self.variables['atoll_home']}/venv/bin/atoll"

    @property
    def config(self) -> str:
        return self.var("atoll_config_path")


def snapshot_sources(dest: Path) -> Path:
    """Copy what the role builds the package from (``atoll_source_items``) out of the work tree."""
    items = role_defaults()["atoll_source_items"]
    assert isinstance(items, list)
    for item in items:
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / item)
    return dest


def node_variables(root: Path, **extra: object) -> dict[str, object]:
    """The role's defaults, but every node path under ``root``."""
    return {
        "atoll_source_dir": str(root / "src"),
        "atoll_home": str(root / "opt" / "atoll"),
        "atoll_bin_link": str(root / "usr" / "local" / "bin" / "atoll"),
        "atoll_config_path": str(root / "etc" / "atoll" / "atoll.yaml"),
        "atoll_store_path": str(root / "var" / "lib" / "atoll"),
        "atoll_ganeti_extstorage_dir": str(root / "srv" / "ganeti" / "extstorage"),
        "atoll_ganeti_os_dir": str(root / "srv" / "ganeti" / "os"),
        "atoll_ganeti_hooks_dir": str(root / "etc" / "ganeti" / "hooks"),
        **extra,
    }


def apply(
    root: Path,
    variables: dict[str, object],
    name: str,
    playbook: str = "site.yml",
    inventory: str = "localhost,",
    times: int = 2,
) -> Node:
    """Apply ``playbook`` ``times`` times (twice: the second run shows idempotence); each must succeed."""
    runs = []
    for n in range(1, times + 1):
        run = run_playbook(playbook, variables, root / f"{name}-run{n}", inventory)
        assert run.rc == 0 and run.total("failed") == 0, run.explain()
        runs.append(run)
    return Node(root, variables, tuple(runs))


@pytest.fixture(scope="session")
def node_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private root for the node's files, holding a snapshot of the package sources."""
    need_root()
    need_tools("apt-get", "dpkg-query")
    need(tool("ansible-playbook") is not None, "needs ansible-core (pip install ansible-core)")
    need(Path("/usr/bin/python3").exists(), "needs Debian's /usr/bin/python3")
    root = tmp_path_factory.mktemp("node")
    snapshot_sources(root / "src")
    return root


@pytest.fixture(scope="session")
def node(node_root: Path) -> Node:
    """site.yml applied twice with the role's defaults (embedded default store), paths under a temp root."""
    return apply(node_root, node_variables(node_root), "default")


@pytest.fixture(scope="session")
def xfs_node(node: Node) -> Iterator[Node]:
    """site.yml applied twice more, now with the store on a dedicated XFS: a sparse image file mounted
    through a loop device, recorded in a private fstab (the virtualenv is the one ``node`` built)."""
    need_tools("mkfs.xfs", "blkid", "losetup", "mount", "umount")
    root = node.root
    variables = node_variables(
        root,
        atoll_config_path=str(root / "etc" / "atoll-xfs" / "atoll.yaml"),
        atoll_store_path=str(root / "srv" / "atoll-xfs"),
        atoll_store_xfs_device=str(root / "images" / "store.xfs"),
        atoll_store_xfs_image_size="1G",
        atoll_store_xfs_fstab=str(root / "etc" / "fstab"),
        atoll_ganeti_install=False,
    )
    try:
        yield apply(root, variables, "xfs")
    finally:
        subprocess.run(["umount", str(variables["atoll_store_path"])], capture_output=True, check=False)


@pytest.fixture(scope="session")
def host() -> Host:
    """The target host, as testinfra sees it: this machine."""
    need(
        importlib.util.find_spec("testinfra") is not None,
        "needs pytest-testinfra (pip install pytest-testinfra)",
    )
    import testinfra

    return testinfra.get_host("local://")


@dataclass(frozen=True)
class Cluster:
    """cluster.yml applied twice to two nodes of this machine: ``nodes`` maps each name to its variables."""

    runs: Node
    nodes: dict[str, dict[str, str]]

    def atoll(self, name: str) -> str:
        return f"{self.runs.atoll} --config {self.nodes[name]['atoll_config_path']}"


@pytest.fixture(scope="session")
def cluster_nodes(node: Node, ceph_conf: str, postgres_url: str) -> Cluster:
    """cluster.yml on two local nodes (each its own configuration and store directory; one virtualenv
    of their own, which gets the PostgreSQL extra) sharing the session's micro Ceph, whose
    configuration (and a keyring) the role copies from the controller, and a fresh PostgreSQL schema."""
    root = node.root
    keyring = root / "controller" / "ceph.client.admin.keyring"  # the micro Ceph needs no cephx key
    keyring.parent.mkdir(parents=True, exist_ok=True)
    keyring.write_text("[client.admin]\n\tkey = AQAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAA==\n")
    shared: dict[str, object] = {
        "atoll_source_dir": str(root / "src"),
        "atoll_home": str(root / "cluster" / "opt" / "atoll"),
        "atoll_bin_link": str(root / "cluster" / "usr" / "local" / "bin" / "atoll"),
        "atoll_store_backend": "rbd",
        "atoll_rbd_pool": os.environ.get("ATOLL_TEST_CEPH_POOL", "atoll"),
        "atoll_rbd_namespace": f"ansible-{uuid.uuid4().hex[:12]}",
        "atoll_ceph_conf": str(root / "cluster" / "etc" / "ceph" / "ceph.conf"),
        "atoll_ceph_conf_src": ceph_conf,
        "atoll_ceph_keyring_src": str(keyring),
        "atoll_ceph_keyring_path": str(root / "cluster" / "etc" / "ceph" / "ceph.client.admin.keyring"),
        "atoll_catalog_url": daemons.new_schema(postgres_url),
        "atoll_ganeti_install": False,
    }
    nodes = {
        name: {
            "atoll_config_path": str(root / "cluster" / name / "etc" / "atoll" / "atoll.yaml"),
            "atoll_store_path": str(root / "cluster" / name / "var" / "lib" / "atoll"),
        }
        for name in ("node1", "node2")
    }
    hosts = {name: {"ansible_connection": "local", "ansible_become": False, **v} for name, v in nodes.items()}
    inventory = root / "cluster-inventory.yml"
    inventory.write_text(yaml.safe_dump({"atoll_nodes": {"hosts": hosts}}))
    return Cluster(apply(root, shared, "cluster", "cluster.yml", str(inventory)), nodes)


def _ganeti_answers() -> bool:
    from tests.ganeti import cluster as gnt

    if not (gnt.STATE / "env").exists():
        return False
    try:
        return gnt.Cluster.load().gnt("gnt-cluster", "info", check=False, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def ganeti_cluster() -> Iterator[object]:
    """The project's Ganeti test cluster (scripts/ganeti-test-cluster.sh): the one that is up, else one
    started here and removed at the end of the session (ATOLL_GANETI_KEEP=1 keeps it), so that
    tests/ganeti finds it running."""
    from tests.ganeti import cluster as gnt

    need_root()
    need(Path("/usr/lib/ganeti/daemon-util").exists(), "needs Ganeti 3.0 (scripts/install-deps.sh)")
    need(
        not Path("/run/systemd/system").exists(), "the test cluster needs a machine without systemd as PID 1"
    )
    was_up = _ganeti_answers()
    started = gnt.Cluster.load() if was_up else gnt.up()
    try:
        yield started
    finally:
        if not was_up and os.environ.get("ATOLL_GANETI_KEEP") != "1":
            gnt.down()


@pytest.fixture(scope="module")
def ganeti_node(
    node: Node, ganeti_cluster: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    """site.yml applied once more, now with Ganeti's real directories (the ones the test cluster searches).
    What was there before is put aside, and put back after this module's tests."""
    from provider.ganeti import install

    variables = node_variables(node.root)
    for key in ("atoll_ganeti_extstorage_dir", "atoll_ganeti_os_dir", "atoll_ganeti_hooks_dir"):
        del variables[key]
    defaults = role_defaults()
    targets = [
        Path(str(defaults["atoll_ganeti_extstorage_dir"])) / install.NAME,
        Path(str(defaults["atoll_ganeti_os_dir"])) / install.NAME,
        *(
            Path(str(defaults["atoll_ganeti_hooks_dir"])) / f.relpath
            for f in install.hook_files("python", None)
        ),
    ]
    aside = tmp_path_factory.mktemp("ganeti-aside")
    kept = {}
    for n, path in enumerate(targets):
        if path.exists():
            kept[path] = aside / str(n)
            shutil.move(path, kept[path])
    try:
        yield apply(node.root, variables, "ganeti", times=1)
    finally:
        for path in targets:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        for path, saved in kept.items():
            shutil.move(saved, path)
