"""Two Atoll nodes sharing one Ceph pool and one PostgreSQL catalog: separate processes, configuration
directories and host names (each CLI call runs in its own UTS namespace named node-a or node-b)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import daemons
from tests.conftest import StoreEnv, make_store_env, rbd_store_keys, write_disk
from tests.datapath.conftest import force_clean, leftovers, read_at, write_direct
from tests.helpers import need, need_root, need_tools

MiB = 1 << 20


@dataclass
class Node:
    name: str
    env: StoreEnv

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``atoll ARGS`` as this node: its own configuration and host name."""
        script = 'hostname "$0" && exec "$@"'
        argv = ["unshare", "--uts", "sh", "-c", script, self.name, sys.executable, "-m", "provider", *args]
        env = {**os.environ, "ATOLL_CONFIG": str(self.env.config_path)}
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.name}: atoll {' '.join(args)} failed: {proc.stderr}")
        return proc

    def ext(self, verb: str, **env: str) -> subprocess.CompletedProcess[str]:
        """An ExtStorage verb as Ganeti runs it on this node: a clean environment, VOL_* and EXTP_*."""
        script = 'hostname "$0" && exec "$@"'
        argv = [
            "unshare",
            "--uts",
            "sh",
            "-c",
            script,
            self.name,
            sys.executable,
            "-m",
            "provider.ganeti.extstorage",
        ]
        clean = {
            "ATOLL_CONFIG": str(self.env.config_path),
            "PYTHONPATH": str(Path(__file__).parents[2]),
            **env,
        }
        return subprocess.run([*argv, verb], env=clean, capture_output=True, text=True, check=False)

    def refused(self, *args: str) -> str:
        proc = self.cli(*args, check=False)
        assert proc.returncode == 1, f"{self.name}: atoll {' '.join(args)} was not refused"
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        return lines[0]


@pytest.fixture
def nodes(tmp_path: Path, postgres_url: str, ceph_conf: str) -> Iterator[tuple[Node, Node]]:
    need_root()
    need_tools("unshare", "rbd-fuse", "losetup")
    need(os.path.exists("/dev/fuse"), "needs /dev/fuse")
    catalog = daemons.new_schema(postgres_url)
    keys = rbd_store_keys(ceph_conf)  # one pool namespace for both nodes
    a, b = (Node(n, make_store_env("rbd", tmp_path / n, catalog, store=keys)) for n in ("node-a", "node-b"))
    yield a, b
    problems = []
    for node in (a, b):
        left = leftovers(node.env)
        if left:
            force_clean(node.env)
            problems += left
    assert not problems, f"the data path leaked: {problems}"


def test_written_on_one_node_read_on_the_other_never_both_writing(
    nodes: tuple[Node, Node], tmp_path: Path
) -> None:
    a, b = nodes
    disk = write_disk(tmp_path / "base.raw", 16 * MiB)
    a.cli("object", "upload", "images/base.raw", str(disk))
    a.cli("image", "register", "images/base.raw", "--name", "base")
    a.cli("volume", "create", "vm1", "--from", "base", "--size", "32M", "--no-customize")
    assert [line.split()[2] for line in b.cli("volume", "list").stdout.splitlines()[2:]] == ["vm1"]

    dev_a = a.cli("volume", "attach", "vm1").stdout.strip()
    write_direct(dev_a, 20 * MiB, b"written on node-a".ljust(4096, b"."))
    assert b.refused("volume", "attach", "vm1") == (
        "atoll: error: volume 'vm1' is in use: it is attached for writing on node-a (detach it there first)"
    )
    assert "attached for writing on node-a" in b.refused("volume", "attach", "vm1", "--userspace")
    a.cli("volume", "detach", "vm1")

    dev_b = b.cli("volume", "attach", "vm1").stdout.strip()
    assert read_at(dev_b, 20 * MiB, 17) == b"written on node-a"
    assert read_at(dev_b, 0, 5) == b"atoll", "the image's data shows through the clone"
    assert "attached for writing on node-b" in a.refused("volume", "attach", "vm1")
    refused = a.refused("volume", "delete", "vm1")
    assert f"attached at {dev_b} on host node-b since " in refused
    assert refused.endswith(
        "run 'atoll volume detach vm1' there, or 'atoll host forget node-b' if it is dead"
    )
    b.cli("volume", "detach", "vm1")
    a.cli("volume", "delete", "vm1")


def test_live_migration_shares_the_volume_then_hands_it_over(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    a.cli("volume", "create", "vm2", "--size", "8M")
    vol = {"VOL_NAME": "vm2", "EXTP_ACCESS": "userspace"}
    shared, exclusive = {"VOL_OPEN_EXCLUSIVE": "False"}, {"VOL_OPEN_EXCLUSIVE": "True"}
    attached = a.ext("attach", **vol)  # the running guest on node-a
    assert attached.returncode == 0, attached.stderr
    uri = attached.stdout.splitlines()[1]
    assert uri.startswith("kvm:rbd:")
    # Ganeti's migration (lib/cmdlib/instance_migration.py): both nodes open shared, the target attaches,
    # the source closes, the target opens exclusively, the source detaches.
    assert a.ext("open", **vol, **shared).returncode == 0
    assert b.ext("open", **vol, **shared).returncode == 0
    target = b.ext("attach", **vol)
    assert target.returncode == 0 and target.stdout.splitlines()[1] == uri
    early = a.ext("open", **vol, **exclusive)
    assert early.returncode == 1 and "open on node-b for a migration" in early.stderr
    assert a.ext("close", **vol).returncode == 0
    assert b.ext("open", **vol, **exclusive).returncode == 0
    assert a.ext("detach", **vol).returncode == 0
    # node-b now writes alone: node-a can neither attach nor share it
    assert "attached for writing on node-b" in a.refused("volume", "attach", "vm2", "--userspace")
    assert "attached for writing on node-b" in a.refused("volume", "open", "vm2", "--shared")
    assert b.ext("close", **vol).returncode == 0
    assert b.ext("detach", **vol).returncode == 0
    a.cli("volume", "attach", "vm2", "--userspace")
    a.cli("volume", "detach", "vm2")


def test_forgetting_a_dead_node_breaks_its_write_lock(nodes: tuple[Node, Node]) -> None:
    """node-a dies with vm1 attached for writing: node-b is refused until an admin forgets node-a, which
    breaks node-a's RBD lock and drops its attachment; then node-b attaches, and fsck is clean."""
    a, b = nodes
    a.cli("volume", "create", "vm1", "--size", "8M")
    a.cli("volume", "attach", "vm1", "--userspace")  # holds the lock; nothing on the host to clean up
    assert "attached for writing on node-a" in b.refused("volume", "attach", "vm1", "--userspace")
    assert "'atoll host forget node-a' if it is dead" in b.refused("volume", "delete", "vm1")
    assert "node-b is this host" in b.refused("host", "forget", "node-b", "--yes")
    assert b.cli("host", "forget", "node-a", "--yes").stdout.strip() == "host node-a forgotten; released: vm1"
    listed = b.cli("host", "list").stdout
    assert any(line.split()[:3] == ["node-a", "forgotten", "0"] for line in listed.splitlines())
    assert b.cli("volume", "attach", "vm1", "--userspace").stdout.startswith("rbd:")
    assert "attached for writing on node-b" in a.refused("volume", "attach", "vm1", "--userspace")
    b.cli("volume", "detach", "vm1")
    assert b.cli("fsck").returncode == 0
    b.cli("volume", "delete", "vm1")
