#!/usr/bin/env python3
"""Data path throughput: fio on the raw file, on every Atoll attachment path, and on plain QEMU serving a
qcow2 overlay (the peer anchors), interleaved in one run; ratios to the raw file on the same filesystem.

Workloads: random 4 KiB reads and writes at queue depth 32, sequential 1 MiB reads and writes at queue
depth 8 (libaio, O_DIRECT; fio's nbd engine for NBD sockets). Every target holds the same 1 GiB of random
data and is written once end to end before measuring (steady state: clusters allocated, reflinked extents
unshared). Root only (loop devices, an XFS loop mount for the reflink store).

    sudo .venv/bin/python bench/datapath.py [--runs 3] [--runtime 5] [--size-mib 1024] [--write]
        [--part fio|qemu|all]

``--part qemu`` measures what a hypervisor gets instead, with QEMU's own block layer (``qemu-img bench``,
the code a libvirt guest's disk runs through): a qcow2 volume opened directly (``volume attach --domain
--direct``) against the same volume through its daemon's NBD export (the default userspace path) and the
raw file. Its table goes into a section of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results
from provider import config as config_mod
from provider.services import Caller, Store

HEADING = "## Data path: attachment paths against the raw file (bench/datapath.py)"
QEMU_HEADING = "## Data path as QEMU sees it: --direct qcow2 against NBD and the raw file (bench/datapath.py)"
# qemu-img bench: request size, queue depth, write?, number of requests (sequential, wrapping around)
QEMU_WORKLOADS = {
    "read 4k qd32": ("4k", 32, False, 60_000),
    "read 1M qd8": ("1M", 8, False, 2_000),
    "write 4k qd32": ("4k", 32, True, 60_000),
    "write 1M qd8": ("1M", 8, True, 2_000),
}
WORKLOADS = {
    "rand read 4k qd32": ("randread", "4k", 32),
    "rand write 4k qd32": ("randwrite", "4k", 32),
    "seq read 1M qd8": ("read", "1M", 8),
    "seq write 1M qd8": ("write", "1M", 8),
}


@dataclass
class Target:
    name: str
    baseline: str  # name of the raw-file target it is compared with
    fio_args: list[str]


def sh(*argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def fio(target: Target, workload: str, runtime: int, size: int) -> float:
    """IOPS (4k) or MB/s (1M) of one fio run."""
    rw, bs, depth = WORKLOADS[workload]
    out = sh(
        "fio", "--name=bench", f"--rw={rw}", f"--bs={bs}", f"--iodepth={depth}", "--direct=1",
        f"--runtime={runtime}", "--time_based", f"--size={size}", "--randrepeat=0",
        "--output-format=json", *target.fio_args,
    ).stdout  # fmt: skip
    if "{" not in out:
        raise RuntimeError(f"fio on {target.name}: {out[-500:]}")
    job = json.loads(out[out.index("{") :])["jobs"][0]
    read, write = job["read"], job["write"]
    if bs == "4k":
        return float(read["iops"] + write["iops"])
    return (read["bw_bytes"] + write["bw_bytes"]) / 1e6


def block(path: str) -> list[str]:
    return ["--ioengine=libaio", f"--filename={path}"]


def nbd(uri: str) -> list[str]:
    socket = uri.removeprefix("nbd:unix:")
    return ["--ioengine=nbd", f"--uri=nbd+unix:///?socket={socket}"]


def fill(path: Path, size: int) -> None:
    sh("dd", "if=/dev/urandom", f"of={path}", "bs=4M", f"count={size >> 22}", "status=none")


def precondition(target: Target, size: int) -> None:
    sh("fio", "--name=fill", "--rw=write", "--bs=1M", "--iodepth=8", "--direct=1", f"--size={size}",
       "--output-format=json", *target.fio_args)  # fmt: skip


@contextlib.contextmanager
def xfs(work: Path) -> Iterator[Path]:
    image, mnt = work / "xfs.img", work / "xfs"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(8 << 30)
    sh("mkfs.xfs", "-q", "-m", "reflink=1", str(image))
    sh("mount", "-o", "loop", str(image), str(mnt))
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode:
            subprocess.run(["umount", "--lazy", str(mnt)], check=False)


def store(path: Path, backend: str) -> Store:
    raw = {"store": {"backend": backend, "path": str(path)}}
    return Store.open(config_mod.parse(raw), Caller("root", True))


def atoll_targets(st: Store, image: Path, label: str, baseline: str) -> list[Target]:
    """Upload and register ``image``, clone two volumes, attach one per access mode."""
    with open(image, "rb") as f:
        obj = st.objects.upload(f"bench/{label}.raw", f)
    st.images.register(obj.id, name=f"bench-{label}")
    targets = []
    for access in ("kernelspace", "userspace"):
        name = f"{label}-{access}"
        st.volumes.create(name, source=f"bench-{label}")
        att = st.volumes.attach(name, userspace=access == "userspace")
        if att.device:
            args = block(att.device)
        elif att.kind == "nbd":
            args = nbd(att.uri or "")
        else:
            args = block(att.uri or "")
        targets.append(Target(f"Atoll {label} {access} ({att.kind})", baseline, args))
    return targets


@contextlib.contextmanager
def anchors(work: Path, image: Path, size: int) -> Iterator[list[Target]]:
    """qemu-nbd and qemu-storage-daemon (FUSE export + loop) serving a plain qcow2 overlay of ``image``."""
    base = work / "anchor-base.raw"
    sh("cp", "--sparse=always", str(image), str(base))
    over = [work / "anchor-nbd.qcow2", work / "anchor-fuse.qcow2"]
    for o in over:
        sh("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base.name, str(o), str(size),
           cwd=work)  # fmt: skip
    sock, qsd_pid, fuse = work / "anchor.sock", work / "qsd.pid", work / "anchor-disk"
    fuse.touch()
    nbd_pid = work / "qemu-nbd.pid"
    sh("qemu-nbd", "--fork", "--persistent", f"--pid-file={nbd_pid}", "--socket", str(sock), "-f", "qcow2",
       "--cache=none", "--aio=native", "--discard=unmap", str(over[0]))  # fmt: skip
    blockdev = {"driver": "qcow2", "node-name": "a", "cache": {"direct": True},
                "file": {"driver": "file", "filename": str(over[1]), "aio": "native"}}  # fmt: skip
    export = {"type": "fuse", "id": "e", "node-name": "a", "mountpoint": str(fuse), "writable": True}
    sh("qemu-storage-daemon", "--daemonize", "--pidfile", str(qsd_pid), "--blockdev", json.dumps(blockdev),
       "--export", json.dumps(export))  # fmt: skip
    dev = sh("losetup", "--find", "--show", "--direct-io=off", str(fuse)).stdout.strip()
    try:
        yield [
            Target("qemu-nbd, plain qcow2 overlay (nbd)", "raw file (host fs)", nbd(f"nbd:unix:{sock}")),
            Target("qemu-storage-daemon FUSE + loop, plain overlay", "raw file (host fs)", block(dev)),
        ]
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
        subprocess.run(["kill", qsd_pid.read_text().strip()], check=False)
        subprocess.run(["kill", nbd_pid.read_text().strip()], check=False)


def measure(targets: list[Target], runs: int, runtime: int, size: int) -> dict[tuple[str, str], float]:
    samples: dict[tuple[str, str], list[float]] = {}
    for run in range(runs):
        for workload in WORKLOADS:
            for target in targets:  # interleaved: every target sees the same background load
                samples.setdefault((target.name, workload), []).append(fio(target, workload, runtime, size))
        print(f"run {run + 1}/{runs} done", file=sys.stderr)
    return {key: statistics.median(values) for key, values in samples.items()}


def table(
    targets: list[Target],
    medians: dict[tuple[str, str], float],
    workloads: Collection[str] = tuple(WORKLOADS),
) -> str:
    lines = ["| target | " + " | ".join(workloads) + " |", "|---" * (len(workloads) + 1) + "|"]
    for target in targets:
        cells = []
        for workload in workloads:
            value = medians[(target.name, workload)]
            unit = "k IOPS" if "4k" in workload else " MB/s"
            shown = f"{value / 1000:.1f}{unit}" if "4k" in workload else f"{value:.0f}{unit}"
            if target.name == target.baseline:
                cells.append(f"1.00 ({shown})")
            else:
                cells.append(f"{value / medians[(target.baseline, workload)]:.2f} ({shown})")
        lines.append(f"| {target.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(work: Path, args: argparse.Namespace, report: Callable[[str], None]) -> None:
    size = args.size_mib << 20
    image = work / "image.raw"
    fill(image, size)
    with xfs(work) as mnt, contextlib.ExitStack() as stack:
        raw_host, raw_xfs = work / "raw-host.raw", mnt / "raw-xfs.raw"
        sh("cp", str(image), str(raw_host))
        sh("cp", str(image), str(raw_xfs))
        targets = [
            Target("raw file (host fs)", "raw file (host fs)", block(str(raw_host))),
            Target("raw file (XFS)", "raw file (XFS)", block(str(raw_xfs))),
        ]
        stores = [store(work / "qcow2-store", "qcow2"), store(mnt / "reflink-store", "reflink")]
        for st in stores:
            stack.callback(detach_all, st)
        targets += atoll_targets(stores[1], image, "reflink", "raw file (XFS)")
        targets += atoll_targets(stores[0], image, "qcow2", "raw file (host fs)")
        targets += stack.enter_context(anchors(work, image, size))
        for target in targets:
            precondition(target, size)
        medians = measure(targets, args.runs, args.runtime, size)
        report(table(targets, medians))


def qemu_bench(image: list[str], workload: str) -> float:
    """IOPS (4k) or MB/s (1M) of QEMU's block layer on ``image`` (``qemu-img bench`` arguments)."""
    bs, depth, write, count = QEMU_WORKLOADS[workload]
    out = sh("qemu-img", "bench", "-c", str(count), "-d", str(depth), "-s", bs, *(["-w"] if write else []),
             *image).stdout  # fmt: skip
    seconds = float(out.rsplit("Run completed in", 1)[1].split()[0])
    if bs == "4k":
        return count / seconds
    return count * (1 << 20) / seconds / 1e6


def qemu_view(work: Path, args: argparse.Namespace, report: Callable[[str], None]) -> None:
    """The raw file, a qcow2 volume opened directly, and the same kind of volume through its NBD export."""
    size = args.size_mib << 20
    raw = work / "raw-host.raw"
    fill(raw, size)
    st = store(work / "qcow2-store", "qcow2")
    try:
        with open(raw, "rb") as f:
            obj = st.objects.upload("bench/qemu.raw", f)
        st.images.register(obj.id, name="bench-qemu")
        for name in ("direct", "nbd"):
            st.volumes.create(name, source="bench-qemu")
        direct = str(st.backend().path(st.volumes.get("direct").locator))
        sock = (st.volumes.attach("nbd", userspace=True).uri or "").removeprefix("nbd:unix:")
        nbd_opts = f"driver=raw,file.driver=nbd,file.server.type=unix,file.server.path={sock}"
        base = "raw file (host fs)"
        targets = [
            Target(base, base, ["-f", "raw", "-t", "none", "-i", "native", str(raw)]),
            Target(
                "Atoll qcow2 --direct (QEMU opens the chain)",
                base,
                ["-f", "qcow2", "-t", "none", "-i", "native", direct],
            ),
            Target("Atoll qcow2 userspace (NBD export)", base, ["--image-opts", nbd_opts]),
        ]
        for target in targets[1:]:  # steady state: every cluster of the volumes allocated once
            sh("qemu-img", "bench", "-w", "-c", str(size >> 20), "-s", "1M", "-d", "8", *target.fio_args)
        samples: dict[tuple[str, str], list[float]] = {}
        for run in range(args.runs):
            for workload in QEMU_WORKLOADS:
                for target in targets:
                    samples.setdefault((target.name, workload), []).append(
                        qemu_bench(target.fio_args, workload)
                    )
            print(f"qemu run {run + 1}/{args.runs} done", file=sys.stderr)
        medians = {key: statistics.median(values) for key, values in samples.items()}
        report(table(targets, medians, QEMU_WORKLOADS))
    finally:
        detach_all(st)


def detach_all(st: Store) -> None:
    for vol in st.volumes.list():
        st.volumes.detach(vol.id)
    st.catalog.engine.dispose()  # the catalog file must not keep the XFS busy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--runtime", type=int, default=5, help="seconds per fio run")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--write", action="store_true", help="put the table into bench/RESULTS.md")
    parser.add_argument("--part", choices=("fio", "qemu", "all"), default="all")
    args = parser.parse_args()
    machine = (
        f"Machine: {os.cpu_count()} cores, kernel {platform.release()}, "
        f"{sh('qemu-storage-daemon', '--version').stdout.splitlines()[0]}, load average "
        f"{os.getloadavg()[0]:.1f} at the start, shared with other jobs: read the ratios."
    )
    parts = {
        "fio": (HEADING, run, f"{args.runs} interleaved runs of {args.runtime} s per target and workload, "
                f"median; {args.size_mib} MiB per target, written once before measuring."),
        "qemu": (QEMU_HEADING, qemu_view, f"`qemu-img bench` (sequential, wrapping around), {args.runs} "
                 f"interleaved runs per target and workload, median; {args.size_mib} MiB per target, written "
                 "once before measuring."),
    }  # fmt: skip
    for part in ("fio", "qemu") if args.part == "all" else (args.part,):
        heading, measure_part, how = parts[part]
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=args.workdir, prefix="atoll-bench-dp-") as tmp:
            result: list[str] = []
            measure_part(Path(tmp), args, result.append)
        cells = "Cells: ratio to the raw file on the same filesystem (absolute value in brackets)."
        text = "\n".join([heading, "", f"{machine} {how} {cells}", "", result[0], ""])
        print(text)
        print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
        if args.write:
            results.write_section(heading, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
