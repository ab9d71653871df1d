"""bench/ganeti: time from ``gnt-instance add`` to a ready, customized disk, on a real Ganeti 3.0.

Atoll's way (an ext disk of provider atoll: thin clone of the image, then the OS definition customizes it in
place) against the snf-image way (a plain ``file`` disk, the OS create script copies the whole image onto it,
then customizes), for the same image, in the same run, interleaved. Needs root; brings the test cluster up
with scripts/ganeti-test-cluster.sh and leaves it as it found it only with --down.

Usage: .venv/bin/python bench/ganeti.py [--size 10G] [--runs 3] [--down]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provider.ganeti import install
from provider.ganeti.osglue import raw_path
from provider.utils.sizes import format_size, parse_size
from tests.conftest import StoreEnv, make_store_env
from tests.ganeti import cluster as ganeti_cluster
from tests.ganeti import guest
from tests.ganeti.conftest import register_image
from tests.images import build

NAME = "atoll-bench"


@dataclass
class Variant:
    label: str
    env: StoreEnv
    args: list[str]
    seconds: list[float] = field(default_factory=list)
    failure: str | None = None


@contextlib.contextmanager
def xfs(base: Path, size: int) -> Iterator[Path]:
    """A loop-mounted XFS with reflink=1 (what the reflink backend needs)."""
    image, mnt = base / "xfs.img", base / "xfs"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(size)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def hostname_on_disk(variant: Variant) -> str:
    if "file" in variant.args:
        return guest.read_file(next(Path("/srv/ganeti/file-storage").glob(f"{NAME}/*")), "/etc/hostname")
    store = variant.env.open()
    (vol,) = [v for v in store.volumes.list() if v.volume and v.volume.ganeti.get("instance") == NAME]
    with raw_path(store, vol, None) as disk:
        return guest.read_file(disk, "/etc/hostname")


def run_once(cluster: ganeti_cluster.Cluster, variant: Variant) -> float:
    install.install(sys.executable, str(variant.env.config_path))
    cluster.remove_instance(NAME)
    start = time.monotonic()
    cluster.gnt(
        "gnt-instance",
        "add",
        "--no-name-check",
        "--no-ip-check",
        "--no-nics",
        "--no-start",
        "-n",
        cluster.node,
        "-o",
        "atoll+default",
        *variant.args,
        NAME,
    )
    seconds = time.monotonic() - start
    hostname = hostname_on_disk(variant).strip()
    if hostname != NAME:
        raise AssertionError(f"the disk's host name is {hostname!r}, not {NAME}")
    cluster.remove_instance(NAME)
    return seconds


def table(variants: list[Variant], baseline: Variant, size: int, runs: int) -> str:
    rows = [
        f"`gnt-instance add --no-start`, {format_size(size)} image to a customized disk; median of {runs} "
        "interleaved runs (seconds); ratio = variant / baseline, lower is faster.",
        "",
        "| variant | median s | min s | max s | ratio |",
        "|---|---|---|---|---|",
    ]
    base = statistics.median(baseline.seconds)
    for v in variants:
        if v.failure or not v.seconds:
            rows.append(f"| {v.label} | failed: {v.failure} | | | |")
            continue
        med = statistics.median(v.seconds)
        rows.append(
            f"| {v.label} | {med:.2f} | {min(v.seconds):.2f} | {max(v.seconds):.2f} | {med / base:.3f} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="10G", help="image and disk size (default 10G)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--down", action="store_true", help="tear the test cluster down afterwards")
    args = parser.parse_args()
    size = parse_size(args.size)
    with ganeti_cluster.exclusive():
        return bench(size, args.runs, args.down)


def bench(size: int, runs: int, down: bool) -> int:
    cluster = ganeti_cluster.up()
    image, _info = build.cached(build.ImageSpec(size=size))
    mib = size >> 20
    ext = ["-t", "ext", "--disk", f"0:size={mib}M,provider=atoll,origin=guest"]
    try:
        with tempfile.TemporaryDirectory(prefix="atoll-bench-") as tmp, xfs(Path(tmp), 4 * size) as mnt:
            reflink = make_store_env("reflink", mnt / "store", "")
            qcow2 = make_store_env("qcow2", Path(tmp) / "qcow2-store", "")
            for env in (reflink, qcow2):
                register_image(env, image, "guest")
            baseline = Variant(
                "file disk + full image copy in OS create (snf-image way)",
                reflink,
                ["-t", "file", "--disk", f"0:size={mib}M", "-O", "img_id=guest"],
            )
            variants = [
                Variant("ext/atoll, reflink clone", reflink, ext),
                Variant("ext/atoll, qcow2 clone", qcow2, ext),
            ]
            variants.append(baseline)
            for n in range(runs):
                for v in (v for v in variants if v.failure is None):
                    try:
                        v.seconds.append(run_once(cluster, v))
                    except AssertionError as e:  # reported in the table, the other variants go on
                        v.failure = str(e).strip().splitlines()[-1]
                    print(f"run {n + 1}: {v.label}: {v.failure or f'{v.seconds[-1]:.2f} s'}", file=sys.stderr)
            print(table(variants, baseline, size, runs))
            print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        cluster.remove_instance(NAME)
        if down:
            ganeti_cluster.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
