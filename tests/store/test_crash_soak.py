"""A seeded random crash soak: random operations, each killed at a random moment (a random registered
failpoint, or SIGKILL after a random delay); after each, ``fsck --repair`` leaves ``fsck`` and a scrub
clean. The seed is printed (and taken from ``$ATOLL_SOAK_SEED``) so a failure can be replayed;
``$ATOLL_SOAK_OPS`` sets the number of operations."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provider.utils.faults import FAILPOINTS
from tests.conftest import FILE_BACKENDS, StoreEnv, make_store_env, write_disk
from tests.datapath.conftest import _store_path, force_clean, leftovers
from tests.helpers import need_root

MiB = 1 << 20


def _commands(rng: random.Random, disk: Path, n: int) -> list[str]:
    vol = f"v{rng.randrange(4)}"
    return rng.choice(
        [
            ["volume", "create", f"v{n % 4}", "--from", "base", "--no-customize"],
            ["volume", "snapshot", vol, f"s{n}"],
            ["volume", "grow", vol, "--size", f"{16 + n}M"],
            ["volume", "delete", vol],
            ["volume", "attach", vol],
            ["volume", "detach", vol],
            ["object", "upload", f"c/o{n}", str(disk)],
            ["fsck", "--scrub"],
        ]
    )


def _killed_run(env: StoreEnv, argv: list[str], rng: random.Random) -> str:
    extra = {}
    how = rng.choice(["failpoint", "timer"])
    if how == "failpoint":
        extra["ATOLL_FAILPOINT"] = rng.choice(sorted(FAILPOINTS))
    proc = subprocess.Popen(
        [sys.executable, "-m", "provider", *argv],
        env={**os.environ, "ATOLL_CONFIG": str(env.config_path), **extra},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if how == "timer":
        time.sleep(rng.uniform(0, 2.0))
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=600)
    return f"{' '.join(argv)} [{extra.get('ATOLL_FAILPOINT', 'timer')}] -> {proc.returncode}"


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_random_crash_soak(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    need_root()
    seed = int(os.environ.get("ATOLL_SOAK_SEED") or random.randrange(1 << 32))
    ops = int(os.environ.get("ATOLL_SOAK_OPS", "12"))
    print(f"crash soak seed {seed} ({ops} operations on {backend}): replay with ATOLL_SOAK_SEED={seed}")
    rng = random.Random(seed)
    env = make_store_env(backend, _store_path(backend, tmp_path, request), "", store={"max_chain_depth": "3"})
    disk = write_disk(tmp_path / "disk.raw", 4 * MiB, every=256 * 1024)
    env.cli("object", "upload", "images/base.raw", str(disk))
    env.cli("image", "register", "images/base.raw", "--name", "base")
    history = []
    try:
        for n in range(ops):
            history.append(_killed_run(env, _commands(rng, disk, n), rng))
            env.cli("fsck", "--repair", check=False)  # the operator's command; checked in-process
            store = env.open()
            report, scrub = store.fsck.run(), store.scrub.run(restart=True)
            assert report.findings == [] and scrub.clean, (seed, history, report, scrub)
        store = env.open()
        for res in store.volumes.list() + store.images.list(include_snapshots=True):
            store.datapath.detach(res.id)
    finally:
        left = leftovers(env)
        if left:
            force_clean(env)
    assert not left, (seed, history, left)
