#!/usr/bin/env python3
"""Clone and snapshot latency against a full copy of the same image, measured in one run.

For each backend available here (qcow2 on the current filesystem; reflink on a loop-mounted XFS when
root) and each image — 1 GiB fully written, 10 GiB and 100 GiB sparse (1 MiB of data per GiB) — it times
``volume create --from`` (thin clone) and ``volume snapshot`` through the services, and ``cp --reflink=never``
/ ``qemu-img convert`` of the same image file: the copy an installer without CoW pays (both skip holes, so
on sparse images they copy only the data). Prints a Markdown table with the copy/clone ratios.

    sudo .venv/bin/python bench/clone.py [--runs 5] [--sizes 1,10,100] [--workdir DIR] [--write]

``--write`` replaces this benchmark's section of bench/RESULTS.md (machine and load included).
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
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import results
from provider import config as config_mod
from provider.services import Caller, Store

GiB = 1 << 30
HEADING = "## Clone and snapshot against a full copy (bench/clone.py)"
HEADERS = ["backend", "image", "clone ms", "snapshot ms", "cp ms", "qemu-img convert ms", "cp/clone",
           "convert/clone"]  # fmt: skip
READING = (
    "Reading: clone and snapshot stay flat from 1 GiB to 100 GiB on both backends — they write only\n"
    "metadata (`tests/store/test_services.py` asserts a 100 GiB clone allocates under 1 MiB). A copy costs\n"
    "what the image holds and grows with every GiB of data; the copies of the sparse images are cheap only\n"
    "because they are almost all holes. Compare ratios within one run: absolute times follow the load."
)


def make_image(path: Path, size_gib: int, full: bool) -> None:
    with open(path, "wb") as f:
        if full:
            block = os.urandom(4 << 20)
            for _ in range(size_gib * GiB // len(block)):
                f.write(block)
        else:
            f.truncate(size_gib * GiB)
            for off in range(0, size_gib * GiB, GiB):  # a little data in every GiB
                f.seek(off)
                f.write(os.urandom(1 << 20))
        os.fsync(f.fileno())


def copy_and_sync(argv: list[str | Path], target: Path) -> None:
    """A copy is done when its data is durable, as a clone's metadata is."""
    subprocess.run(argv, check=True)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def timed(fn: Callable[[], object], runs: int, cleanup: Callable[[], object] | None = None) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
        if cleanup:
            cleanup()
    return statistics.median(samples)


@contextlib.contextmanager
def xfs(workdir: Path) -> Iterator[Path | None]:
    if os.geteuid() != 0:
        yield None
        return
    img, mnt = workdir / "xfs.img", workdir / "xfs"
    mnt.mkdir(exist_ok=True)
    with open(img, "wb") as f:
        f.truncate(300 * GiB)
    subprocess.run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", str(img)], check=True)
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        img.unlink()


def bench_backend(backend: str, root: Path, images: dict[str, Path], runs: int) -> list[list[str]]:
    cfg = config_mod.parse({"store": {"backend": backend, "path": str(root / f"store-{backend}")}})
    store = Store.open(cfg, Caller("root", True))
    rows = []
    for label, src in images.items():
        name = label.replace(" ", "-")
        with open(src, "rb") as f:
            store.objects.upload(f"bench/{name}", f)
        counter = iter(range(10**6))

        def clone(name: str = name, counter: Iterator[int] = counter) -> None:
            store.volumes.create(f"c{next(counter)}-{name}", source=f"bench/{name}")

        clone_ms = timed(clone, runs)
        store.volumes.create(f"snapvol-{name}", source=f"bench/{name}")
        snap_ms = timed(
            lambda n=name, c=counter: store.volumes.snapshot(f"snapvol-{n}", f"s{next(c)}-{n}"), runs
        )
        copy_target = root / f"store-{backend}" / "copy.raw"
        cp_ms = timed(
            lambda s=src, t=copy_target: subprocess.run(
                ["cp", "--reflink=never", "--sparse=always", s, t], check=True
            ),
            min(runs, 3),
            copy_target.unlink,
        )
        conv_ms = timed(
            lambda s=src, t=copy_target: copy_and_sync(
                ["qemu-img", "convert", "-f", "raw", "-O", "raw", str(s), str(t)], t
            ),
            min(runs, 3),
            copy_target.unlink,
        )
        rows.append(
            [backend, label, f"{clone_ms:.1f}", f"{snap_ms:.1f}", f"{cp_ms:.0f}", f"{conv_ms:.0f}",
             f"{cp_ms / clone_ms:.1f}x", f"{conv_ms / clone_ms:.1f}x"]
        )  # fmt: skip
        print("  done:", backend, label, file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--sizes", default="1,10,100", help="GiB; the first is fully written, the rest sparse"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--write", action="store_true", help="record the table in bench/RESULTS.md")
    args = parser.parse_args()
    load_before = os.getloadavg()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="atoll-bench-") as tmp:
        root = Path(tmp)
        with xfs(root) as mnt:
            base_dir = mnt or root
            images = {}
            for i, size in enumerate(sizes):
                label = f"{size} GiB {'written' if i == 0 else 'sparse'}"
                path = base_dir / f"img{size}.raw"
                make_image(path, size, full=(i == 0))
                images[label] = path
            rows = bench_backend("qcow2", root, images, args.runs)
            if mnt is not None:
                rows += bench_backend("reflink", mnt, images, args.runs)
            else:
                print("not root: the reflink backend (loop-mounted XFS) is not measured", file=sys.stderr)
    load_after = os.getloadavg()
    table = "\n".join(
        ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        + ["| " + " | ".join(row) + " |" for row in rows]
    )
    about = (
        f"`sudo .venv/bin/python bench/clone.py --runs {args.runs} --sizes {args.sizes}`. Machine: "
        f"{os.cpu_count()} cores, shared with other jobs (load average {load_before[0]:.1f} at the start, "
        f"{load_after[0]:.1f} at the end). qcow2 store on the host filesystem; reflink store on a "
        "loop-mounted XFS (`reflink=1`). The first image is fully written (random data), the others "
        "sparse (1 MiB of data per GiB). Clone = `volume create --from` and snapshot = `volume "
        f"snapshot` through the services (median of {args.runs}, catalog transactions included); the "
        "competitors copy the same image file without reflinks and `fsync` it "
        f"(median of {min(args.runs, 3)})."
    )
    text = "\n".join([HEADING, "", about, "", table, "", READING, ""])
    print(text)
    if args.write:
        results.write_section(HEADING, text)


if __name__ == "__main__":
    main()
