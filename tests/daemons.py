"""Test daemons started by the project's own scripts: a micro Ceph and a private PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
# The scripts stop what they started once this process is gone, even if the session is killed before
# its fixtures tear down.
OWNER = str(os.getpid())


def free_port(span: int = 1) -> int:
    """A loopback port with ``span - 1`` free neighbours above it (the micro Ceph mon needs two)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + span >= 65536:
            continue
        taken = False
        for extra in range(1, span):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + extra))
                except OSError:
                    taken = True
        if not taken:
            return port
    raise RuntimeError("no free loopback port")


def _exports(stdout: str) -> dict[str, str]:
    found = {}
    for line in stdout.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            found[key] = value
    return found


@dataclass
class Daemon:
    """A started script-managed service: what it exported, and how to stop it."""

    script: str
    env: dict[str, str]
    exports: dict[str, str]
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def stop(self) -> None:
        subprocess.run(
            [str(SCRIPTS / self.script), "stop", "--purge"], env=self.env, capture_output=True, check=False
        )


def _start(script: str, env: dict[str, str], want: str) -> Daemon:
    full = {**os.environ, **env}
    proc = subprocess.run(
        [str(SCRIPTS / script), "start"], env=full, capture_output=True, text=True, timeout=300, check=False
    )
    exports = _exports(proc.stdout)
    daemon = Daemon(script, full, exports)
    if proc.returncode != 0 or want not in exports:
        tail = proc.stderr.strip().splitlines()[-3:]
        daemon.error = f"{script} start failed ({proc.returncode}): {' / '.join(tail)}"
    return daemon


@contextlib.contextmanager
def micro_ceph(base: Path, auth: str = "none") -> Iterator[Daemon]:
    """A one-OSD memstore Ceph in ``base`` on free loopback ports (``auth``: none or cephx); stopped and
    purged at exit."""
    daemon = _start(
        "micro-ceph.sh",
        {
            "ATOLL_CEPH_DIR": str(base / "ceph"),
            "ATOLL_CEPH_PORT": str(free_port(2)),
            "ATOLL_CEPH_OWNER": OWNER,
            "ATOLL_CEPH_AUTH": auth,
        },
        "CEPH_CONF",
    )
    try:
        yield daemon
    finally:
        daemon.stop()


@contextlib.contextmanager
def postgres() -> Iterator[Daemon]:
    """A private PostgreSQL on a free loopback port (its directory must be reachable by the postgres
    user, so not under pytest's private tmp); stopped and purged at exit."""
    base = tempfile.mkdtemp(prefix="atoll-pg-")
    os.chmod(base, 0o755)
    daemon = _start(
        "postgres-test.sh",
        {
            "ATOLL_PG_DIR": os.path.join(base, "pg"),
            "ATOLL_PG_PORT": str(free_port()),
            "ATOLL_PG_OWNER": OWNER,
        },
        "ATOLL_PG_URL",
    )
    try:
        yield daemon
    finally:
        daemon.stop()
        with contextlib.suppress(OSError):
            os.rmdir(base)


def new_schema(server_url: str) -> str:
    """Create a fresh schema on the PostgreSQL server; return a catalog URL whose search_path is it."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url.replace("+psycopg", "", 1), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in server_url else "?"
    return f"{server_url}{sep}options=-csearch_path%3D{schema}"
