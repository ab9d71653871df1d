"""The real Ganeti 3.0 test cluster (scripts/ganeti-test-cluster.sh) as the tests drive it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "ganeti-test-cluster.sh"
STATE = Path("/etc/atoll-ganeti-test")
LOCK = Path("/run/lock/atoll-ganeti-test.lock")


@dataclass(frozen=True)
class Cluster:
    """Settings the cluster script wrote to its env file; ``gnt`` runs a gnt-* command on the node."""

    settings: dict[str, str]

    @classmethod
    def load(cls) -> Cluster:
        lines = (STATE / "env").read_text().splitlines()
        return cls(dict(line.split("=", 1) for line in lines if "=" in line))

    @property
    def node(self) -> str:
        return self.settings["ATOLL_GNT_NODE"]

    def gnt(self, *argv: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        prefix = (
            ["nsenter", f"--uts={self.settings['ATOLL_GNT_UTS']}"]
            if self.settings.get("ATOLL_GNT_UTS")
            else []
        )
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
        proc = subprocess.run(
            [*prefix, *argv], env=env, capture_output=True, text=True, check=False, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def instances(self) -> list[str]:
        return self.gnt("gnt-instance", "list", "--no-headers", "-o", "name").stdout.split()

    def remove_instance(self, name: str) -> None:
        if name in self.instances():
            self.gnt("gnt-instance", "remove", "-f", "--ignore-failures", "--shutdown-timeout=0", name)

    def rapi_env(self) -> dict[str, str]:
        return {k: v for k, v in self.settings.items() if k.startswith("ATOLL_RAPI_")}


def answers() -> bool:
    """Is a test cluster up, and does its master answer?"""
    if not (STATE / "env").exists():
        return False
    try:
        return Cluster.load().gnt("gnt-cluster", "info", check=False, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@contextlib.contextmanager
def exclusive(wait: float = 3600) -> Iterator[None]:
    """Hold the one test cluster (and Ganeti's provider directories) for this process: a second test
    session or a bench on the same machine waits instead of installing over this one."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the Ganeti test cluster stayed busy ({LOCK})") from None
                time.sleep(1)
        yield
    finally:
        os.close(fd)


def up() -> Cluster:
    subprocess.run([str(SCRIPT), "up"], check=True, env={**os.environ, "LANG": "C"})
    return Cluster.load()


def down() -> None:
    subprocess.run([str(SCRIPT), "down"], check=False)
