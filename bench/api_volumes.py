"""Benchmark: a volume from a 10 GiB image through the Volume API vs the same through the CLI.

Both clone the image (no data copied) and run its no-secret tasks (grow partition and filesystem to 12 GiB,
host keys, machine id, hostname) on the same store: ``atoll serve`` under gunicorn driven by
python-cinderclient (create returns when the volume is available), against ``atoll volume create`` as a
subprocess. Goal (issue 12 §4): the API takes at most 1.3x the CLI's time.
Usage (root): python -m bench.api_volumes [--runs 3] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cinderclient import client as cinder_client

from bench import results
from tests.api.conftest import ApiServer, start_server
from tests.images import build

IMAGE_SIZE = 10 << 30
VOLUME_GIB = 12
GOAL = 1.3
HEADING = "## Volume API: volume from a 10 GiB image, API vs CLI (bench/api_volumes.py)"
PROPS = ("--property", "OSFAMILY=linux", "--property", "ROOT_PARTITION=1")


def _timed(action: Callable[[int], str], i: int, cleanup: Callable[[str], None]) -> float:
    start = time.monotonic()
    made = action(i)
    elapsed = time.monotonic() - start
    cleanup(made)
    return elapsed


def run(runs: int) -> tuple[list[float], list[float]]:
    image, _ = build.cached(build.ImageSpec(size=IMAGE_SIZE))
    with tempfile.TemporaryDirectory(prefix="atoll-bench-api-") as tmp:
        server: ApiServer = start_server(Path(tmp))
        try:
            env = server.env
            env.cli("object", "upload", "images/big.raw", str(image), user="alpha")
            image_id = env.json("image", "register", "images/big.raw", "--name", "big", *PROPS, user="alpha")[
                "id"
            ]
            cinder = cinder_client.Client("3.60", session=server.session("alice"))
            cinder.volumes.list()  # log in and discover the endpoint before timing

            def via_api(i: int) -> str:
                vol = cinder.volumes.create(VOLUME_GIB, imageRef=image_id, name=f"api-{i}")
                assert vol.status == "available", vol.status
                return str(vol.id)

            def via_cli(i: int) -> str:
                made = env.json(
                    "volume", "create", f"cli-{i}", "--from", "big", "--size", f"{VOLUME_GIB}G", user="alpha"
                )
                return str(made["id"])

            def remove(vid: str) -> None:
                env.cli("volume", "delete", vid, user="alpha")

            api_times: list[float] = []
            cli_times: list[float] = []
            for i in range(runs):  # interleaved, so load changes hit both alike
                api_times.append(_timed(via_api, i, remove))
                cli_times.append(_timed(via_cli, i, remove))
            return api_times, cli_times
        finally:
            server.stop()


def table(api_times: list[float], cli_times: list[float]) -> str:
    ratio = statistics.median(api_times) / statistics.median(cli_times)
    verdict = "met" if ratio <= GOAL else "missed"
    lines = [
        "| path | runs | median s | min s | vs CLI | goal |",
        "|---|---|---|---|---|---|",
        f"| CLI `atoll volume create` | {len(cli_times)} | {statistics.median(cli_times):.2f} | "
        f"{min(cli_times):.2f} | 1.00x | |",
        f"| Volume API (cinderclient) | {len(api_times)} | {statistics.median(api_times):.2f} | "
        f"{min(api_times):.2f} | {ratio:.2f}x | <= {GOAL}x: {verdict} |",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    api_times, cli_times = run(args.runs)
    load = os.getloadavg()
    about = " ".join(
        [
            f"Machine: {os.cpu_count()} cores, kernel {platform.release()}, load {load[0]:.1f} (shared with",
            "other jobs). Store: qcow2 backend, SQLite catalog; the server runs 2 gunicorn workers.",
            "Image: synthetic GPT/ext4 disk of 10 GiB; each volume is 12 GiB, customized without secrets",
            "(partition and filesystem growth, host keys, machine id, hostname). The CLI time includes its",
            "Python start-up; the API time is the whole cinderclient create call. Runs alternate.",
        ]
    )
    text = "\n".join([HEADING, "", about, "", table(api_times, cli_times), ""])
    return results.publish(HEADING, text, args.write)


if __name__ == "__main__":
    sys.exit(main())
