#!/usr/bin/env python3
"""RBD: Atoll's clone/snapshot latency and 4k/1M throughput against the rbd CLI and qemu-img bench on a
plain RBD image, in one run on one cluster.

Starts a micro Ceph (scripts/micro-ceph.sh; or uses --ceph-conf) and an rbd store in its own namespace,
uploads a 1 GiB image (256 MiB of data), then measures:

- upload/download through Atoll against ``rbd import``/``rbd export`` of the same file;
- clone and snapshot latency: Atoll's services (catalog included), the ``atoll`` CLI, the ``rbd`` CLI,
  and librbd called directly (the floor);
- ``qemu-img bench`` (4 KiB at depth 32, 1 MiB at depth 8, read and write, cache=none) on a plain RBD
  image and on an Atoll volume, in userspace (QEMU's rbd driver, the URI attach gives) and kernelspace
  (the block device attach gives: rbd-fuse + loop here, as this kernel has no rbd or nbd module).

Prints Markdown tables with ratios. Needs root for the kernelspace path.

    sudo .venv/bin/python bench/rbd_store.py [--runs 3] [--ceph-conf FILE --pool POOL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provider import config as config_mod  # noqa: E402
from provider.services import Caller, Store  # noqa: E402
from tests.daemons import micro_ceph  # noqa: E402

MiB, GiB = 1 << 20, 1 << 30


def median_ms(fn: Callable[[int], object], runs: int) -> float:
    samples = []
    for i in range(runs):
        start = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def sh(*argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


class Bench:
    def __init__(self, conf: str, pool: str, workdir: Path, runs: int) -> None:
        self.conf, self.pool, self.workdir, self.runs = conf, pool, workdir, runs
        self.ns = f"bench-{uuid.uuid4().hex[:8]}"
        store = {"backend": "rbd", "path": str(workdir / "store"), "pool": pool, "ceph_conf": conf}
        raw = {"store": {**store, "namespace": self.ns}}
        self.config_path = workdir / "atoll.yaml"
        self.config_path.write_text(json.dumps(raw))
        self.store = Store.open(config_mod.load(self.config_path), Caller("root", True))
        self.image_file = workdir / "image.raw"
        with open(self.image_file, "wb") as f:
            f.truncate(GiB)
            for off in range(0, GiB, 4 * MiB):  # a quarter written: 1 MiB in every 4 MiB
                f.seek(off)
                f.write(os.urandom(MiB))

    def rbd(self, *args: str) -> str:
        return sh("rbd", "-c", self.conf, *args).stdout

    def spec(self, name: str) -> str:
        return f"{self.pool}/{self.ns}/{name}"

    def atoll(self, *args: str) -> None:
        env = {**os.environ, "ATOLL_CONFIG": str(self.config_path)}
        sh(sys.executable, "-m", "provider", *args, env=env)

    # ---- data in and out -------------------------------------------------------------------------
    def transfer(self) -> list[list[str]]:
        def upload(i: int) -> None:
            with open(self.image_file, "rb") as f:
                self.store.objects.upload(f"images/base{i}.raw", f)

        out = self.workdir / "out.raw"

        def download(_i: int) -> None:
            with open(out, "wb") as f:
                self.store.objects.download("images/base0.raw", f)
            out.unlink()

        def rbd_export(_i: int) -> None:
            self.rbd("export", self.spec("plain"), str(out))
            out.unlink()

        up = median_ms(upload, self.runs)
        image = str(self.image_file)
        rbd_up = median_ms(lambda i: self.rbd("import", image, self.spec(f"plain{i}")), self.runs)
        self.rbd("import", image, self.spec("plain"))
        self.store.images.register("images/base0.raw", "base")
        down = median_ms(download, self.runs)
        rbd_down = median_ms(rbd_export, self.runs)

        def mbs(ms: float) -> str:
            return f"{GiB / MiB / (ms / 1000):.0f}"

        return [
            ["upload 1 GiB (256 MiB data)", mbs(up), "rbd import", mbs(rbd_up), f"{rbd_up / up:.2f}"],
            ["download 1 GiB", mbs(down), "rbd export", mbs(rbd_down), f"{rbd_down / down:.2f}"],
        ]

    # ---- latency ---------------------------------------------------------------------------------
    def latency(self) -> list[list[str]]:
        import rbd

        vols = self.store.volumes
        backend = self.store.backend()
        io_ctx = backend.cluster.ioctx(self.pool, self.ns)  # type: ignore[attr-defined]
        self.rbd("snap", "create", self.spec("plain@s"))
        self.rbd("snap", "protect", self.spec("plain@s"))
        r = self.runs * 3
        svc_clone = median_ms(lambda i: vols.create(f"svc{i}", source="base"), r)
        cli_clone = median_ms(
            lambda i: self.atoll("volume", "create", f"cli{i}", "--from", "base", "--no-customize"), r
        )
        rbd_clone = median_ms(lambda i: self.rbd("clone", self.spec("plain@s"), self.spec(f"c{i}")), r)
        lib_clone = median_ms(lambda i: rbd.RBD().clone(io_ctx, "plain", "s", io_ctx, f"l{i}"), r)
        svc_snap = median_ms(lambda i: vols.snapshot("svc0", f"svc0-s{i}"), r)
        cli_snap = median_ms(lambda i: self.atoll("volume", "snapshot", "cli0", f"cli0-s{i}"), r)

        def rbd_snap(i: int) -> None:
            self.rbd("snap", "create", self.spec(f"c0@s{i}"))
            self.rbd("snap", "protect", self.spec(f"c0@s{i}"))

        def lib_snap(i: int) -> None:
            with rbd.Image(io_ctx, "l0") as image:
                image.create_snap(f"s{i}")
                image.protect_snap(f"s{i}")

        rbd_snap_ms = median_ms(rbd_snap, r)
        lib_snap_ms = median_ms(lib_snap, r)

        def row(what: str, s: float, c: float, rc: float, lib: float) -> list[str]:
            return [
                what,
                f"{s:.1f}",
                f"{c:.0f}",
                f"{rc:.0f}",
                f"{lib:.1f}",
                f"{c / rc:.2f}",
                f"{s / lib:.1f}",
            ]

        return [
            row("clone (volume create --from)", svc_clone, cli_clone, rbd_clone, lib_clone),
            row("snapshot + protect", svc_snap, cli_snap, rbd_snap_ms, lib_snap_ms),
        ]

    # ---- throughput ------------------------------------------------------------------------------
    def qemu_bench(self, target: str, size: int, depth: int, write: bool) -> float:
        """MiB/s of ``qemu-img bench`` (cache=none) on ``target``: a file/device or an rbd: URI."""
        count = max(64, (256 * MiB if size >= MiB else 64 * MiB) // size)
        argv = [
            "qemu-img",
            "bench",
            "-f",
            "raw",
            "-t",
            "none",
            "-c",
            str(count),
            "-d",
            str(depth),
            "-s",
            str(size),
        ]
        if write:
            argv += ["-w", "--pattern=165"]  # not zeros: librbd could skip those
        out = sh(*argv, target).stdout
        seconds = float(re.search(r"Run completed in ([0-9.]+) seconds", out).group(1))  # type: ignore[union-attr]
        return count * size / MiB / seconds

    def throughput(self) -> list[list[str]]:
        plain = f"rbd:{self.spec('plain')}:conf={self.conf}"
        self.rbd("clone", self.spec("plain@s"), self.spec("tclone"))  # what layering alone costs
        self.store.volumes.create("tput", source="base")
        user = self.store.volumes.attach("tput", userspace=True).uri or ""
        targets = {
            "plain RBD image (QEMU rbd driver)": plain,
            "rbd clone of it (QEMU rbd driver)": f"rbd:{self.spec('tclone')}:conf={self.conf}",
            "Atoll volume (a clone), userspace URI": user,
        }
        kernel = None
        if os.geteuid() == 0:
            self.store.volumes.create("tput-k", source="base")
            kernel = self.store.volumes.attach("tput-k").device
            targets["Atoll volume (a clone), kernelspace: rbd-fuse + loop"] = kernel or ""
        rows = []
        cases = [
            ("4k read qd32", 4096, 32, False),
            ("4k write qd32", 4096, 32, True),
            ("1M read qd8", MiB, 8, False),
            ("1M write qd8", MiB, 8, True),
        ]
        results: dict[str, list[float]] = {}
        for name, target in targets.items():
            results[name] = [
                statistics.median(self.qemu_bench(target, s, d, w) for _ in range(self.runs))
                for _, s, d, w in cases
            ]
        base = results["plain RBD image (QEMU rbd driver)"]
        for name, values in results.items():
            cells = []
            for (_label, size, _d, _w), v, b in zip(cases, values, base, strict=True):
                value = f"{v * MiB / size / 1000:.1f}k IOPS" if size < MiB else f"{v:.0f} MiB/s"
                cells.append(f"{value} ({v / b:.2f})")
            rows.append([name, *cells])
        self.store.volumes.detach("tput")
        if kernel:
            self.store.volumes.detach("tput-k")
        return rows


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def cluster(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str, str]]:
    if args.ceph_conf:
        yield args.ceph_conf, args.pool
        return
    with micro_ceph(workdir) as daemon:
        if not daemon.ok:
            raise SystemExit(daemon.error)
        yield daemon.exports["CEPH_CONF"], daemon.exports.get("ATOLL_CEPH_POOL", "atoll")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ceph-conf", help="use this cluster instead of starting a micro Ceph")
    parser.add_argument("--pool", default="atoll")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="atoll-bench-rbd-") as tmp,
        cluster(args, Path(tmp)) as (conf, pool),
    ):
        bench = Bench(conf, pool, Path(tmp), args.runs)
        print(f"## RBD backend (bench/rbd_store.py, median of {args.runs}+ runs)\n")
        print(table(["transfer", "Atoll MiB/s", "baseline", "MiB/s", "Atoll / baseline"], bench.transfer()))
        print()
        latency = ["latency (ms)", "Atoll service", "atoll CLI", "rbd CLI", "librbd"]
        print(table([*latency, "CLI / rbd CLI", "service / librbd"], bench.latency()))
        print()
        cases = ["4k read qd32", "4k write qd32", "1M read qd8", "1M write qd8"]
        print(table(["qemu-img bench (ratio to the plain image)", *cases], bench.throughput()))


if __name__ == "__main__":
    main()
