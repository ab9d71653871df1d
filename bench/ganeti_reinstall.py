"""bench/ganeti_reinstall: ``gnt-instance reinstall`` of an instance on an Atoll disk — the volume becomes a
fresh clone of its origin again and is customized, whatever the image's size — against the snf-image way
(the OS create copies the whole image onto a ``file`` disk, then customizes), on a real Ganeti 3.0, with
images of two sizes. Backends: reflink (a loop-mounted XFS), qcow2 and rbd (a micro Ceph started for the
run). Every reinstall sets a new host name, checked on the disk afterwards.

Usage: sudo .venv/bin/python bench/ganeti_reinstall.py [--sizes 1G,10G] [--runs 3] [--write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import results
from bench.ganeti import machine, warm_up
from bench.ganeti_verbs import xfs
from provider.ganeti.osglue import raw_path
from provider.utils.sizes import format_size, parse_size
from tests import daemons
from tests.conftest import StoreEnv, make_store_env, rbd_store_keys
from tests.ganeti import cluster as ganeti_cluster
from tests.ganeti import guest
from tests.ganeti.conftest import register_image
from tests.images import build

NAME = "atoll-rein"
HEADING = "## Ganeti: instance reinstall, re-clone vs full copy (bench/ganeti_reinstall.py)"


@dataclass
class Variant:
    label: str
    backend: str  # reflink | qcow2 | rbd | file (the full copy)
    env: StoreEnv
    seconds: dict[int, list[float]] = field(default_factory=dict)  # image size -> reinstall times

    @property
    def instance(self) -> str:
        return f"{NAME}-{self.backend}"


def add(cluster: ganeti_cluster.Cluster, v: Variant, mib: int) -> None:
    if v.backend == "file":
        disk = ["-t", "file", "--disk", f"0:size={mib}M", "-O", "img_id=guest"]
    else:
        disk = ["-t", "ext", "--disk", f"0:size={mib}M,provider=atoll,origin=guest"]
    cluster.remove_instance(v.instance)
    cluster.gnt(
        "gnt-instance",
        "add",
        *("--no-name-check", "--no-ip-check", "--no-nics", "--no-start", "-n", cluster.node),
        *("-o", "atoll+default", *disk, v.instance),
        timeout=1800,
    )


def hostname_on_disk(v: Variant) -> str:
    if v.backend == "file":
        disk = next(Path("/srv/ganeti/file-storage").glob(f"{v.instance}/*"))
        return guest.read_file(disk, "/etc/hostname").strip()
    store = v.env.open()
    (vol,) = [x for x in store.volumes.list() if x.volume and x.volume.ganeti.get("instance") == v.instance]
    with raw_path(store, vol, None) as disk:
        return guest.read_file(disk, "/etc/hostname").strip()


def reinstall_once(cluster: ganeti_cluster.Cluster, v: Variant, hostname: str) -> float:
    os.sync()  # the last run's writeback is not this one's cost
    start = time.monotonic()
    params = f"hostname={hostname}" + (",img_id=guest" if v.backend == "file" else "")  # -O replaces them all
    cluster.gnt("gnt-instance", "reinstall", "-f", "-O", params, v.instance, timeout=1800)
    seconds = time.monotonic() - start
    if hostname_on_disk(v) != hostname:
        raise AssertionError(f"{v.label}: the disk does not show host name {hostname}")
    return seconds


@contextmanager
def stores(tmp: Path, size: int) -> Iterator[list[Variant]]:
    with ExitStack() as stack:
        mnt = stack.enter_context(xfs(tmp, 4 * size))
        ceph = stack.enter_context(daemons.micro_ceph(tmp / "ceph"))
        if not ceph.ok:
            raise SystemExit(ceph.error)
        reflink = make_store_env("reflink", mnt / "store", "")
        qcow2 = make_store_env("qcow2", tmp / "qcow2-store", "")
        rbd = make_store_env("rbd", tmp / "rbd-store", "", store=rbd_store_keys(ceph.exports["CEPH_CONF"]))
        yield [
            Variant("ext/atoll, reflink: re-clone + customization", "reflink", reflink),
            Variant("ext/atoll, qcow2: re-clone + customization", "qcow2", qcow2),
            Variant("ext/atoll, rbd: re-clone + customization", "rbd", rbd),
            Variant("file disk: full image copy + customization (snf-image way)", "file", reflink),
        ]


def bench(sizes: list[int], runs: int) -> str:
    cluster = ganeti_cluster.up()
    with tempfile.TemporaryDirectory(prefix="atoll-bench-") as tmp, stores(Path(tmp), max(sizes)) as variants:
        envs = {v.env.config_path: v.env for v in variants}.values()  # the full copy reads reflink's image
        try:
            for size in sizes:
                image, _info = build.cached(build.ImageSpec(size=size))
                for env in envs:
                    register_image(env, image, "guest")
                for v in variants:
                    measure(cluster, v, size, runs)
                for env in envs:  # the next size registers its own image
                    env.open().images.delete("guest")
        finally:
            for v in variants:
                cluster.remove_instance(v.instance)
    return table(variants, sizes, runs) + "\n\n" + machine()


def measure(cluster: ganeti_cluster.Cluster, v: Variant, size: int, runs: int) -> None:
    warm_up(cluster, v.env)  # this store's scripts installed, their verb server up
    add(cluster, v, size >> 20)
    times = v.seconds.setdefault(size, [])
    for n in range(runs):
        times.append(reinstall_once(cluster, v, f"re{n}-{size >> 30}g"))
        print(f"{v.label}, {format_size(size)}: {times[-1]:.2f} s", file=sys.stderr)
    cluster.remove_instance(v.instance)


def table(variants: list[Variant], sizes: list[int], runs: int) -> str:
    small, big = min(sizes), max(sizes)
    copy = variants[-1]
    rows = [
        f"`gnt-instance reinstall -f` of a stopped instance, median of {runs} runs (seconds); each run sets "
        "a new host name, checked on the disk. Flat: the time for the larger image over the smaller one "
        "(1.00 = independent of the image's size).",
        "",
        f"| variant | {format_size(small)} image | {format_size(big)} image | {format_size(big)} / "
        f"{format_size(small)} | / full copy ({format_size(big)}) |",
        "|---|---|---|---|---|",
    ]
    ref = statistics.median(copy.seconds[big])
    for v in variants:
        a, b = statistics.median(v.seconds[small]), statistics.median(v.seconds[big])
        rows.append(f"| {v.label} | {a:.2f} | {b:.2f} | {b / a:.2f} | {b / ref:.2f}x |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1G,10G", help="two image sizes (default 1G,10G)")
    parser.add_argument("--runs", type=int, default=3, help="reinstalls per variant and size")
    parser.add_argument("--write", action="store_true", help="record the table in bench/RESULTS.md")
    args = parser.parse_args()
    sizes = sorted(parse_size(s) for s in args.sizes.split(","))
    with ganeti_cluster.exclusive():
        text = "\n".join([HEADING, "", bench(sizes, args.runs), ""])
    return results.publish(HEADING, text, args.write)


if __name__ == "__main__":
    sys.exit(main())
