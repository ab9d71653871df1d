"""Every registered failpoint, tested: the CLI is killed (SIGKILL) at each one on qcow2, reflink and rbd
(where the step exists); then ``fsck --repair`` and ``fsck`` are clean, everything finished before is
intact (a scrub re-hashes it), the interrupted operation is complete or gone (running it again works),
and once everything is detached no loop device, mount or daemon is left. Each ExtStorage verb is killed
the same way at the steps of the services it calls. A second test keeps the registry and the code in
step."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from provider.services import Store
from provider.services.local_disk import local_disk
from provider.utils.faults import FAILPOINTS
from tests.conftest import FILE_BACKENDS, StoreEnv, make_store_env, rbd_store_keys, write_disk
from tests.datapath.conftest import _store_path, force_clean, leftovers, read_at
from tests.helpers import need_root, need_tools
from tests.images import build

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20

# a small partitioned ext4 guest image, registered with the properties that make its clones customized
CUSTOMIZABLE = [
    ["object", "upload", "images/guest.raw", "{guest}"],
    [
        *("image", "register", "images/guest.raw", "--name", "guest"),
        *("--property", "OSFAMILY=linux", "--property", "ROOT_PARTITION=1", "--property", "USERS=root"),
    ],
]
CUSTOMIZED_CLONE = ["volume", "create", "c1", "--from", "guest", "--hostname", "c1"]
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
    "reclone.after-backend": ([], ["volume", "reimage", "v1"]),
    "attach.after-daemon": ([], ["volume", "attach", "v1"]),
    "attach.after-lock": ([], ["volume", "attach", "v1"]),
    "attach.after-datapath": ([], ["volume", "attach", "v1"]),
    "detach.after-loop": ([["volume", "attach", "v1"]], ["volume", "detach", "v1"]),
    "detach.after-datapath": ([["volume", "attach", "v1"]], ["volume", "detach", "v1"]),
    "customize.after-task": (CUSTOMIZABLE, CUSTOMIZED_CLONE),
    "customize.before-done": (CUSTOMIZABLE, CUSTOMIZED_CLONE),
    "import.after-convert": ([], ["image", "import", "imp1", "--from", "{qcow2}"]),
    "import.after-store": ([], ["image", "import", "imp1", "--from", "{qcow2}"]),
    "scrub.after-resource": ([], ["fsck", "--scrub"]),
    "ganeti.attach.before-print": ([], ["ext:attach", "v1"]),
}
# the ExtStorage verbs, each killed at the steps of the services it calls: (verb, point) -> scenario
VERBS: dict[tuple[str, str], tuple[list[list[str]], list[str]]] = {
    ("create", "clone.after-backend"): ([], ["ext:create", "g1", "VOL_SIZE=16", "EXTP_ORIGIN=base"]),
    ("grow", "grow.after-backend"): ([], ["ext:grow", "v1", "VOL_NEW_SIZE=16"]),
    ("snapshot", "snapshot.after-backend"): ([], ["ext:snapshot", "v1", "VOL_SNAPSHOT_NAME=v1.snap"]),
    ("remove", "collect.before-remove"): (
        [["volume", "create", "v2", "--from", "base", "--no-customize"]],
        ["ext:remove", "v2"],
    ),
    ("detach", "detach.after-datapath"): ([["ext:attach", "v1"]], ["ext:detach", "v1"]),
}
BACKENDS = [*FILE_BACKENDS, "rbd"]
ONLY = {  # the steps some backends have and others do not
    "chain.after-rebase": ["qcow2"],  # reflink and rbd volumes have no chains
    "attach.after-daemon": ["qcow2"],  # the qemu-storage-daemon of qcow2 volumes
    "detach.after-loop": ["qcow2"],
    "attach.after-lock": ["rbd"],  # the RBD lock of a read-write attach
    "reclone.after-backend": FILE_BACKENDS,  # v1's rbd snapshot reads its image: reimage is refused
}
CASES = [
    pytest.param(backend, point, id=f"{backend}-{point}")
    for backend in BACKENDS
    for point in sorted(FAILPOINTS)
    if backend in ONLY.get(point, BACKENDS)
]


def test_every_failpoint_in_the_code_is_registered_and_tested() -> None:
    used = set()
    for tree in ("provider", "customization"):
        for path in (ROOT / tree).rglob("*.py"):
            used |= set(re.findall(r'failpoint\(\s*"([^"]+)"', path.read_text()))
    assert used == set(FAILPOINTS), "register every failpoint in provider/utils/faults.py, and only those"
    assert set(SCENARIOS) == set(FAILPOINTS), "every registered failpoint needs a crash scenario here"
    assert {p for _, p in VERBS} <= set(FAILPOINTS)


def _run(
    env: StoreEnv, argv: list[str], disk: Path, point: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI (or ``ext:VERB VOL_NAME [KEY=VALUE…]``: an ExtStorage verb) on ``env``."""
    if "{guest}" in argv:
        path, _info = build.cached(build.ImageSpec(size=32 * MiB))
        argv = [a.replace("{guest}", str(path)) for a in argv]
    if "{qcow2}" in argv:  # the test disk as a qcow2 file, for the image import
        qcow2 = disk.with_suffix(".qcow2")
        if not qcow2.exists():
            convert = ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(disk), str(qcow2)]
            subprocess.run(convert, check=True)
        argv = [a.replace("{qcow2}", str(qcow2)) for a in argv]
    argv = [a.replace("{disk}", str(disk)) for a in argv]
    extra = {"ATOLL_FAILPOINT": point} if point else {}
    if argv[0].startswith("ext:"):
        cmd = [sys.executable, "-m", "provider.ganeti.extstorage", argv[0][4:]]
        extra["VOL_NAME"] = argv[1]
        extra.update(kv.split("=", 1) for kv in argv[2:])
    else:
        cmd = [sys.executable, "-m", "provider", *argv]
    full = {**os.environ, "ATOLL_CONFIG": str(env.config_path), **extra}
    return subprocess.run(cmd, env=full, capture_output=True, check=False)


def _baseline(store: Store, disk: Path) -> None:
    """What finished before the crash (in-process: the same services the CLI calls)."""
    with open(disk, "rb") as f:
        store.objects.upload("images/base.raw", f)
    store.images.register("images/base.raw", "base")
    store.volumes.create("v1", source="base")
    store.volumes.snapshot("v1", "s1")


def _digests(store: Store) -> dict[str, str | None]:
    return {r.id: r.sha256 for r in store.images.list(include_snapshots=True)}


@pytest.mark.parametrize(("backend", "point"), CASES)
def test_kill_at_each_registered_point(
    backend: str, point: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    _kill_and_check(backend, point, SCENARIOS[point], request, tmp_path)


@pytest.mark.parametrize(("verb", "point"), sorted(VERBS), ids=[f"{v}-{p}" for v, p in sorted(VERBS)])
def test_kill_each_extstorage_verb_at_its_steps(
    verb: str, point: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    _kill_and_check("qcow2", point, VERBS[verb, point], request, tmp_path)


def _kill_and_check(
    backend: str,
    point: str,
    scenario: tuple[list[list[str]], list[str]],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    need_root()
    need_tools("losetup", "qemu-img", "qemu-storage-daemon")
    keys = {"max_chain_depth": "2"}
    if backend == "rbd":
        keys |= rbd_store_keys(request.getfixturevalue("ceph_conf"))
        env = make_store_env(backend, tmp_path / "store", "", store=keys)
    else:
        env = make_store_env(backend, _store_path(backend, tmp_path, request), "", store=keys)
    try:
        _crash_and_recover(env, point, scenario, write_disk(tmp_path / "disk.raw", 8 * MiB, every=256 * 1024))
    finally:
        left = leftovers(env)
        if left:
            force_clean(env)
        assert not left, f"left behind: {left}"


def _crash_and_recover(
    env: StoreEnv, point: str, scenario: tuple[list[list[str]], list[str]], disk: Path
) -> None:
    """Kill the CLI at ``point``; ``atoll fsck --repair`` (the operator's command) recovers, checked
    in-process through the services (no interpreter start per check)."""
    _baseline(env.open(), disk)
    before = _digests(env.open())
    setup, command = scenario
    for argv in setup:
        done = _run(env, argv, disk)
        assert done.returncode == 0, done.stderr.decode()
    killed = _run(env, command, disk, point)
    assert killed.returncode == -signal.SIGKILL, f"{point} was never reached: {killed.stderr.decode()}"

    env.cli("fsck", "--repair", check=False)
    store = env.open()
    report, scrub = store.fsck.run(), store.scrub.run(restart=True)
    assert report.findings == [] and scrub.clean, (report, scrub)
    after = _digests(store)
    assert {k: after.get(k) for k in before} == before, "what finished before is intact"
    assert {v.name for v in store.volumes.list()} >= {"v1"}
    assert not list(env.config.store.path.rglob(".import-*")), "an import's scratch files are gone"
    assert not store.imports.list(include_done=False), "no import is left running"

    again = _run(env, command, disk)  # complete or gone: running it again works or finds it done
    done = b"already exists" in again.stderr or (command[-2] == "delete" and b"not found" in again.stderr)
    assert again.returncode == 0 or done, again.stderr.decode()
    store = env.open()
    for res in store.volumes.list() + store.images.list(include_snapshots=True):
        store.datapath.detach(res.id)
    assert store.fsck.run().findings == []


def test_live_snapshot_killed_after_the_daemon_moved_on_keeps_later_writes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """qcow2, attached: the CLI dies after qemu-storage-daemon moved the volume onto its new top. The
    guest's later writes land in that top; fsck completes the snapshot instead of removing the top."""
    need_root()
    need_tools("losetup", "qemu-img", "qemu-storage-daemon")
    env = make_store_env("qcow2", _store_path("qcow2", tmp_path, request), "")
    disk = write_disk(tmp_path / "disk.raw", 8 * MiB, every=256 * 1024)
    before, after = b"written before the snapshot" * 100, b"written after the crash" * 100
    try:
        store = env.open()
        _baseline(store, disk)
        device = store.datapath.attach("v1").device
        assert device is not None
        _write(device, 0, before)
        killed = _run(env, ["volume", "snapshot", "v1", "s2"], disk, "snapshot.after-backend")
        assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
        _write(device, MiB, after)  # the daemon writes this into the new top
        repaired = env.cli("fsck", "--repair", check=False).stdout.decode()
        assert "the snapshot is completed" in repaired, repaired
        store = env.open()
        assert store.fsck.run().findings == []
        with local_disk(store, "s2", writable=False) as snap:
            assert read_at(snap, 0, len(before)) == before
            assert read_at(snap, MiB, len(after)) == read_at(str(disk), MiB, len(after))
        store.datapath.detach("v1")
        with local_disk(store, "v1", writable=False) as vol:
            assert read_at(vol, 0, len(before)) == before and read_at(vol, MiB, len(after)) == after
        assert store.fsck.run().findings == [] and store.scrub.run(restart=True).clean
    finally:
        left = leftovers(env)
        if left:
            force_clean(env)
    assert not left, f"left behind: {left}"


def _write(device: str, offset: int, data: bytes) -> None:
    with open(device, "r+b", buffering=0) as f:
        f.seek(offset)
        f.write(data)
        os.fsync(f.fileno())
