"""Every registered failpoint, tested: the CLI is killed (SIGKILL) at each one on qcow2 and reflink; then
``fsck --repair`` and ``fsck`` are clean, everything finished before is intact (a scrub re-hashes it),
the interrupted operation is complete or gone (running it again works), and once everything is detached
no loop device, mount or daemon is left. A second test keeps the registry and the code in step."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from provider.utils.faults import FAILPOINTS
from tests.conftest import FILE_BACKENDS, StoreEnv, make_store_env, write_disk
from tests.datapath.conftest import _store_path, force_clean, leftovers
from tests.helpers import need_root, need_tools

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20

# point -> (setup commands, the command that reaches the point); "ext:" runs an ExtStorage verb.
SCENARIOS: dict[str, tuple[list[list[str]], list[str]]] = {
    "upload.after-backend": ([], ["object", "upload", "c/new.raw", "{disk}"]),
    "clone.after-backend": ([], ["volume", "create", "c1", "--from", "base", "--no-customize"]),
    "snapshot.after-pending": ([], ["volume", "snapshot", "v1", "s2"]),
    "snapshot.after-backend": ([], ["volume", "snapshot", "v1", "s2"]),
    "chain.after-rebase": ([], ["volume", "snapshot", "v1", "s2"]),
    "grow.after-backend": ([], ["volume", "grow", "v1", "--size", "16M"]),
    "collect.before-remove": (
        [["volume", "create", "v2", "--from", "base", "--no-customize"]],
        ["volume", "delete", "v2"],
    ),
    "attach.after-datapath": ([], ["volume", "attach", "v1"]),
    "detach.after-datapath": ([["volume", "attach", "v1"]], ["volume", "detach", "v1"]),
    "scrub.after-resource": ([], ["fsck", "--scrub"]),
    "ganeti.attach.before-print": ([], ["ext:attach", "v1"]),
}
LAYERED_ONLY = {"chain.after-rebase"}  # reflink volumes have no chains
CASES = [
    pytest.param(backend, point, id=f"{backend}-{point}")
    for backend in FILE_BACKENDS
    for point in sorted(FAILPOINTS)
    if backend == "qcow2" or point not in LAYERED_ONLY
]


def test_every_failpoint_in_the_code_is_registered_and_tested() -> None:
    used = set()
    for tree in ("provider", "customization"):
        for path in (ROOT / tree).rglob("*.py"):
            used |= set(re.findall(r'failpoint\(\s*"([^"]+)"', path.read_text()))
    assert used == set(FAILPOINTS), "register every failpoint in provider/utils/faults.py, and only those"
    assert set(SCENARIOS) == set(FAILPOINTS), "every registered failpoint needs a crash scenario here"


def _run(
    env: StoreEnv, argv: list[str], disk: Path, point: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    argv = [a.replace("{disk}", str(disk)) for a in argv]
    extra = {"ATOLL_FAILPOINT": point} if point else {}
    if argv[0].startswith("ext:"):
        cmd = [sys.executable, "-m", "provider.ganeti.extstorage", argv[0][4:]]
        extra["VOL_NAME"] = argv[1]
    else:
        cmd = [sys.executable, "-m", "provider", *argv]
    full = {**os.environ, "ATOLL_CONFIG": str(env.config_path), **extra}
    return subprocess.run(cmd, env=full, capture_output=True, check=False)


def _baseline(env: StoreEnv, disk: Path) -> None:
    env.cli("object", "upload", "images/base.raw", str(disk))
    env.cli("image", "register", "images/base.raw", "--name", "base")
    env.cli("volume", "create", "v1", "--from", "base", "--no-customize")
    env.cli("volume", "snapshot", "v1", "s1")


@pytest.mark.parametrize(("backend", "point"), CASES)
def test_kill_at_each_registered_point(
    backend: str, point: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    need_root()
    need_tools("losetup", "qemu-img", "qemu-storage-daemon")
    env = make_store_env(backend, _store_path(backend, tmp_path, request), "", store={"max_chain_depth": "2"})
    try:
        _crash_and_recover(env, point, write_disk(tmp_path / "disk.raw", 8 * MiB, every=256 * 1024))
    finally:
        left = leftovers(env)
        if left:
            force_clean(env)
        assert not left, f"left behind: {left}"


def _crash_and_recover(env: StoreEnv, point: str, disk: Path) -> None:
    _baseline(env, disk)
    before = {r["id"]: r["sha256"] for r in env.json("image", "list", "--all")}
    setup, command = SCENARIOS[point]
    for argv in setup:
        env.cli(*argv)
    killed = _run(env, command, disk, point)
    assert killed.returncode == -signal.SIGKILL, f"{point} was never reached: {killed.stderr.decode()}"

    env.cli("fsck", "--repair", check=False)
    report = json.loads(env.cli("-o", "json", "fsck", "--scrub", "--restart").stdout)
    assert report["findings"] == [] and report["scrub"]["clean"], report
    after = {r["id"]: r["sha256"] for r in env.json("image", "list", "--all")}
    assert {k: after.get(k) for k in before} == before, "what finished before is intact"
    assert {v["name"] for v in env.json("volume", "list")} >= {"v1"}

    again = _run(env, command, disk)  # complete or gone: running it again works or finds it done
    done = b"already exists" in again.stderr or (command[-2] == "delete" and b"not found" in again.stderr)
    assert again.returncode == 0 or done, again.stderr.decode()
    for res in env.json("volume", "list") + env.json("image", "list", "--all"):
        env.cli("volume", "detach", res["id"])
    assert json.loads(env.cli("-o", "json", "fsck").stdout)["findings"] == []
