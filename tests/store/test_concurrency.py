"""Concurrent CLI processes on one rbd store, on each catalog (tests/store/test_cli.py: file backends)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import StoreEnv, write_disk

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
