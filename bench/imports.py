"""Benchmark: ``atoll image import`` of a qcow2 against ``qemu-img convert`` of the same file by hand.

Usage (root): python -m bench.imports [--runs 3] [--size 2G] [--data 768M] [--write]
Both convert the same qcow2 to a raw file on the same filesystem (the store's). Atoll's time is the
import job from submission until the image is active (inspector, qemu-img info, conversion, storing,
registration), and separately until its digests (sha256, md5, sha512) are filled in afterwards.
--write puts the table into bench/RESULTS.md under its own heading (other sections are kept).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench import results
from provider import config as config_mod
from provider.services import Caller, Store
from provider.utils.sizes import format_size, parse_size

HEADING = "## Image import: atoll image import vs qemu-img convert (bench/imports.py)"
GOAL = 1.2


def make_source(work: Path, size: int, data: int) -> Path:
    """A qcow2 of ``size`` virtual bytes holding ``data`` bytes in 4 MiB runs spread over the disk."""
    raw = work / "source.raw"
    block = os.urandom(4 << 20)
    runs = max(1, data // len(block))
    stride = max(len(block), (size // runs) // len(block) * len(block))
    with open(raw, "wb") as f:
        f.truncate(size)
        for i in range(runs):
            f.seek(min(i * stride, size - len(block)))
            f.write(block)
    qcow2 = work / "source.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)], check=True)
    raw.unlink()
    return qcow2


def open_store(work: Path) -> Store:
    path = work / "store"
    path.mkdir()
    cfg = path / "atoll.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"backend": "qcow2", "path": str(path)}}))
    return Store.open(config_mod.load(cfg), Caller("root", admin=True))


def by_hand(src: Path, out_dir: Path, durable: bool = False) -> float:
    """``qemu-img convert`` by hand; ``durable``: then ``sync -f`` the result, as Atoll fsyncs what it
    stores before it registers it."""
    out = out_dir / "by-hand.raw"
    start = time.monotonic()
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(src), str(out)], check=True)
    if durable:
        subprocess.run(["sync", "-d", str(out)], check=True)
    elapsed = time.monotonic() - start
    out.unlink()
    return elapsed


def atoll(store: Store, src: Path, name: str) -> tuple[float, float]:
    """(seconds until the image is active, seconds until its digests are filled in)."""
    marks: dict[str, float] = {}

    def listener(phase: str | None, done: int, total: int | None) -> None:
        if phase == "digest":
            marks["active"] = time.monotonic()

    start = time.monotonic()
    job = store.imports.submit(name, str(src), method="local-file", runner="cli")
    job = store.imports.run(job.id, listener)
    end = time.monotonic()
    assert job.state == "active", job.reason
    store.images.delete(name)
    return marks.get("active", end) - start, end - start


def run(runs: int, size: int, data: int) -> tuple[list[float], list[float], list[float], list[float], int]:
    with tempfile.TemporaryDirectory(prefix="atoll-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        src = make_source(work, size, data)
        store = open_store(work)
        hand, durable, active, digested = [], [], [], []
        by_hand(src, store.config.store.path)  # warm the page cache for both
        for i in range(runs):
            hand.append(by_hand(src, store.config.store.path))
            durable.append(by_hand(src, store.config.store.path, durable=True))
            a, d = atoll(store, src, f"bench{i}")
            active.append(a)
            digested.append(d)
        return hand, durable, active, digested, src.stat().st_size


def table(hand: list[float], durable: list[float], active: list[float], digested: list[float]) -> str:
    med, low = statistics.median(hand), min(hand)
    rows = [
        ("qemu-img convert -O raw (by hand)", hand),
        ("qemu-img convert -O raw, then sync -d the result (by hand, durable)", durable),
        ("atoll image import, until active", active),
        ("atoll image import, until digests filled", digested),
    ]
    lines = [
        "| what | runs | median s | min s | x by hand (medians) | x by hand (minimums) |",
        "|---|---|---|---|---|---|",
    ]
    for name, times in rows:
        m, n = statistics.median(times), min(times)
        lines.append(f"| {name} | {len(times)} | {m:.2f} | {n:.2f} | {m / med:.2f}x | {n / low:.2f}x |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", default="2G", help="virtual size of the qcow2")
    parser.add_argument("--data", default="768M", help="bytes of data in it")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    size, data = parse_size(args.size), parse_size(args.data)
    hand, durable, active, digested, qcow2_size = run(args.runs, size, data)
    ratio = statistics.median(active) / statistics.median(hand)
    vs_durable = statistics.median(active) / statistics.median(durable)
    best = min(active) / min(hand)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    about = " ".join(
        [
            f"Machine: {os.cpu_count()} cores, kernel {platform.release()}, load average {load} (shared",
            "with other jobs). Source: a qcow2 of",
            f"{format_size(size)} virtual, {format_size(data)} of data ({format_size(qcow2_size)} file),",
            "converted to raw on the same filesystem (qcow2 store); runs alternate, page cache warm.",
            f"Goal: import until active ≤ {GOAL}x by hand — measured {ratio:.2f}x on medians",
            f"({'met' if ratio <= GOAL else 'NOT met'}), {best:.2f}x on minimums",
            f"({'met' if best <= GOAL else 'NOT met'}); under load the minimums are the steadier figure.",
            f"Against the by-hand conversion made as durable as Atoll's (synced): {vs_durable:.2f}x on",
            "medians.",
        ]
    )
    text = "\n".join([HEADING, "", about, "", table(hand, durable, active, digested), ""])
    return results.publish(HEADING, text, args.write)


if __name__ == "__main__":
    sys.exit(main())
