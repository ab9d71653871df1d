"""bench/ganeti: what Ganeti pays for Atoll — per ExtStorage call, and per ``gnt-instance add``.

``--part verbs`` (bench/ganeti_verbs.py, no cluster needed): the latency of the verbs Ganeti repeats,
against a trivial shell provider and ``python3 -c pass``. ``--part add``: time from ``gnt-instance add`` to
a ready, customized disk on a real Ganeti 3.0 — Atoll's way (an ext disk of provider atoll: thin clone of
the image, then the OS definition customizes it in place) against Ganeti's floor (the same add on the
trivial provider, no OS install) and the snf-image way (a plain ``file`` disk, the OS create script copies
the whole image onto it, then customizes), same image, same run, interleaved. Needs root; brings the test
cluster up with scripts/ganeti-test-cluster.sh and leaves it as it found it only with --down.

Usage: .venv/bin/python bench/ganeti.py [--part verbs|add|all] [--size 10G] [--runs 3] [--verb-runs 15]
       [--down] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import results
from bench.ganeti_verbs import bench_verbs, install_trivial, server_up, xfs
from provider.ganeti import install
from provider.ganeti.osglue import raw_path
from provider.utils.sizes import format_size, parse_size
from tests.conftest import StoreEnv, make_store_env
from tests.ganeti import cluster as ganeti_cluster
from tests.ganeti import guest
from tests.ganeti.conftest import register_image
from tests.images import build

NAME = "atoll-bench"
TRIVIAL_DIR = install.DEFAULT_EXTSTORAGE_DIR / "trivial"
VERBS_HEADING = (
    "## Ganeti: ExtStorage verb latency, Atoll vs a trivial provider (bench/ganeti.py --part verbs)"
)
ADD_HEADING = "## Ganeti: instance add to a customized disk, clone vs full copy (bench/ganeti.py)"


@dataclass
class Variant:
    label: str
    env: StoreEnv
    args: list[str]
    seconds: list[float] = field(default_factory=list)
    failure: str | None = None
    customized: bool = True  # the disk must show the instance's host name afterwards
    prefork: bool = True  # the scripts hand their calls to the verb server (atoll ganeti install's default)


def hostname_on_disk(variant: Variant) -> str:
    if "file" in variant.args:
        return guest.read_file(next(Path("/srv/ganeti/file-storage").glob(f"{NAME}/*")), "/etc/hostname")
    store = variant.env.open()
    (vol,) = [v for v in store.volumes.list() if v.volume and v.volume.ganeti.get("instance") == NAME]
    with raw_path(store, vol, None) as disk:
        return guest.read_file(disk, "/etc/hostname")


def run_once(cluster: ganeti_cluster.Cluster, variant: Variant) -> float:
    install.install(sys.executable, str(variant.env.config_path), prefork=variant.prefork)
    cluster.remove_instance(NAME)
    os.sync()  # the last variant's writeback (a full copy writes the whole image) is not this one's cost
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
    hostname = hostname_on_disk(variant).strip() if variant.customized else NAME
    if hostname != NAME:
        raise AssertionError(f"the disk's host name is {hostname!r}, not {NAME}")
    cluster.remove_instance(NAME)
    return seconds


def warm_up(cluster: ganeti_cluster.Cluster, env: StoreEnv) -> None:
    """The verb server up, as on a node in use (the first call after boot or an idle spell starts it),
    in the namespace Ganeti runs in."""
    install.install(sys.executable, str(env.config_path))
    uts = cluster.settings.get("ATOLL_GNT_UTS")
    server_up(install.DEFAULT_EXTSTORAGE_DIR / "atoll", ("nsenter", f"--uts={uts}") if uts else ())


def table(variants: list[Variant], floor: Variant, copy: Variant, size: int, runs: int) -> str:
    rows = [
        f"`gnt-instance add --no-start`, {format_size(size)} image to a customized disk; median of {runs} "
        "interleaved runs (seconds); ratios: variant / trivial provider (goal for Atoll: ≤ 1.5x) and "
        "variant / full copy, lower is faster.",
        "",
        "| variant | median s | min s | max s | / trivial provider | / full copy |",
        "|---|---|---|---|---|---|",
    ]
    ok = [v for v in (floor, copy) if v.seconds and not v.failure]
    base = {v.label: statistics.median(v.seconds) for v in ok}
    for v in variants:
        if v.failure or not v.seconds:
            rows.append(f"| {v.label} | failed: {v.failure} | | | | |")
            continue
        med = statistics.median(v.seconds)
        ratios = [f"{med / base[b.label]:.2f}x" if b.label in base else "-" for b in (floor, copy)]
        rows.append(
            f"| {v.label} | {med:.2f} | {min(v.seconds):.2f} | {max(v.seconds):.2f} | {' | '.join(ratios)} |"
        )
    return "\n".join(rows)


def machine() -> str:
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"Machine: {os.cpu_count()} cores, kernel {platform.release()}; load average at the end {load}."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("verbs", "add", "all"), default="all")
    parser.add_argument("--size", default="10G", help="image and disk size (default 10G)")
    parser.add_argument("--runs", type=int, default=3, help="gnt-instance add runs per variant")
    parser.add_argument("--verb-runs", type=int, default=15, help="calls per verb and provider")
    parser.add_argument("--down", action="store_true", help="tear the test cluster down afterwards")
    parser.add_argument("--write", action="store_true", help="record the tables in bench/RESULTS.md")
    args = parser.parse_args()
    if args.part in ("verbs", "all"):
        text = "\n".join([VERBS_HEADING, "", bench_verbs(args.verb_runs), machine(), ""])
        print(text)
        if args.write:
            results.write_section(VERBS_HEADING, text)
    if args.part in ("add", "all"):
        with ganeti_cluster.exclusive():
            text = "\n".join([ADD_HEADING, "", bench_add(parse_size(args.size), args.runs, args.down), ""])
        print(text)
        if args.write:
            results.write_section(ADD_HEADING, text)
    return 0


def bench_add(size: int, runs: int, down: bool) -> str:
    cluster = ganeti_cluster.up()
    image, _info = build.cached(build.ImageSpec(size=size))
    mib = size >> 20
    ext = ["-t", "ext", "--disk", f"0:size={mib}M,provider=atoll,origin=guest"]
    install_trivial(TRIVIAL_DIR)
    try:
        with tempfile.TemporaryDirectory(prefix="atoll-bench-") as tmp, xfs(Path(tmp), 4 * size) as mnt:
            reflink = make_store_env("reflink", mnt / "store", "")
            qcow2 = make_store_env("qcow2", Path(tmp) / "qcow2-store", "")
            for env in (reflink, qcow2):
                register_image(env, image, "guest")
            floor = Variant(
                "ext/trivial shell provider, no OS install (Ganeti's floor)",
                reflink,
                ["-t", "ext", "--disk", f"0:size={mib}M,provider=trivial", "--no-install"],
                customized=False,
            )
            copy = Variant(
                "file disk + full image copy in OS create (snf-image way)",
                reflink,
                ["-t", "file", "--disk", f"0:size={mib}M", "-O", "img_id=guest"],
            )
            variants = [
                Variant("ext/atoll, reflink clone + customization", reflink, ext),
                Variant("ext/atoll, qcow2 clone + customization", qcow2, ext),
                Variant("ext/atoll, reflink, --no-prefork (cold starts)", reflink, ext, prefork=False),
                floor,
                copy,
            ]
            warm_up(cluster, reflink)
            for n in range(runs):
                for v in (v for v in variants if v.failure is None):
                    try:
                        v.seconds.append(run_once(cluster, v))
                    except AssertionError as e:  # reported in the table, the other variants go on
                        v.failure = str(e).strip().splitlines()[-1]
                    print(f"run {n + 1}: {v.label}: {v.failure or f'{v.seconds[-1]:.2f} s'}", file=sys.stderr)
            return table(variants, floor, copy, size, runs) + "\n\n" + machine()
    finally:
        cluster.remove_instance(NAME)
        shutil.rmtree(TRIVIAL_DIR, ignore_errors=True)
        if down:
            ganeti_cluster.down()


if __name__ == "__main__":
    sys.exit(main())
