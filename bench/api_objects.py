#!/usr/bin/env python3
"""The Object API (issue 12 §4) against its competitors, measured in one run.

On each backend (qcow2 on the work directory's filesystem; reflink on a loop-mounted XFS when root)
it starts ``atoll serve`` and measures:

- PUT and GET of a fully written object (default 2 GiB) with python-swiftclient, against the CLI's
  ``atoll object upload``/``download`` and ``dd`` of the same file onto the store's filesystem;
- COPY of a 1 GiB and a 100 GiB object (thin clones: flat cost), against ``cp --reflink=never`` of
  1 GiB of written data;
- ``atoll object sync`` of an image (default 1 GiB) with 1 % of its 4 MiB blocks changed, against a
  full PUT of it: bytes sent and time.

Prints Markdown tables with the ratios and records them in bench/RESULTS.md with machine and load.

    sudo .venv/bin/python bench/api_objects.py [--put-gib 2] [--sync-gib 1] [--runs 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
import swiftclient
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import write_section
from provider import config as config_mod
from provider.services import Caller, Store
from provider.utils.blockhash import BLOCK_SIZE

GiB = 1 << 30
PY = sys.executable


@dataclass
class Server:
    url: str
    store: Store
    proc: subprocess.Popen[bytes]
    config: Path
    password: str
    project: str

    def swift(self) -> swiftclient.Connection:
        return swiftclient.Connection(
            authurl=self.url + "/auth/v1.0", user=f"{self.project}:bench", key=self.password, retries=0
        )

    def cli(self, *args: str) -> None:
        env = {**os.environ, "ATOLL_CONFIG": str(self.config), "ATOLL_USER": self.project}
        subprocess.run([PY, "-m", "provider", *args], env=env, check=True, capture_output=True)


@contextlib.contextmanager
def serve(path: Path, backend: str) -> Iterator[Server]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    raw = {
        "store": {"backend": backend, "path": str(path)},
        "auth": {"admins": ["root"]},
        "api": {"bind": f"127.0.0.1:{port}", "workers": 2, "threads": 8},
    }
    path.mkdir(parents=True, exist_ok=True)
    config = path / "atoll.yaml"
    config.write_text(yaml.safe_dump(raw))
    root = Store.open(config_mod.load(config), Caller("root", True))
    project = root.identity.create_project("bench").id
    password = secrets.token_urlsafe(12)
    root.identity.create_user("bench", password, "bench", "member")
    with open(path / "serve.log", "wb") as log:
        env = {**os.environ, "ATOLL_CONFIG": str(config)}
        proc = subprocess.Popen(
            [PY, "-m", "provider", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        for _ in range(600):
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"http://127.0.0.1:{port}/healthcheck", timeout=2).ok:
                    break
            time.sleep(0.1)
        owner = Store.open(config_mod.load(config), Caller(project))
        yield Server(f"http://127.0.0.1:{port}", owner, proc, config, password, project)
    finally:
        proc.terminate()
        proc.wait(30)


def timed(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def written_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        for _ in range(size // (64 << 20)):
            f.write(os.urandom(64 << 20))
        os.fsync(f.fileno())
    return path


def drop_caches() -> None:
    if os.geteuid() == 0:
        subprocess.run(["sync"], check=False)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def bench_put_get(srv: Server, src: Path, runs: int) -> list[list[str]]:
    """Swift PUT/GET vs CLI upload/download vs dd onto the store's filesystem (seconds, MiB/s)."""
    conn = srv.swift()
    conn.put_container("pg")
    counter = iter(range(1000))
    size = src.stat().st_size

    def swift_put() -> None:
        with open(src, "rb") as f:
            conn.put_object("pg", f"o{next(counter)}", f, content_length=size)

    def swift_get() -> None:
        _, body = conn.get_object("pg", "o0", resp_chunk_size=4 << 20)
        for _ in body:
            pass

    def cli_put() -> None:
        srv.cli("object", "upload", f"cli/o{next(counter)}", str(src))

    def cli_get() -> None:
        srv.cli("object", "download", "pg/o0", "/dev/null")

    def dd_put() -> None:
        out = srv.config.parent / f"dd{next(counter)}"
        subprocess.run(["dd", f"if={src}", f"of={out}", "bs=4M", "conv=fsync", "status=none"], check=True)
        out.unlink()

    rows = []
    results = {name: timed(fn, runs) for name, fn in
               (("swift PUT", swift_put), ("CLI upload", cli_put), ("dd", dd_put),
                ("swift GET", swift_get), ("CLI download", cli_get))}  # fmt: skip
    mib = size / (1 << 20)
    for name, secs in results.items():
        ref = results["CLI upload" if "PUT" in name or name in ("dd", "CLI upload") else "CLI download"]
        rows.append([name, f"{secs:.2f}", f"{mib / secs:.0f}", f"{ref / secs:.2f}"])
    return rows


def bench_copy(srv: Server, written: Path, runs: int) -> list[list[str]]:
    """COPY of a 1 GiB and a 100 GiB object vs a byte copy of 1 GiB (milliseconds)."""
    conn = srv.swift()
    conn.put_container("cp")
    for gib in (1, 100):  # read-only objects of any size, without writing them: snapshots of volumes
        srv.store.volumes.create(f"v{gib}", size=gib * GiB)
        srv.store.volumes.snapshot(f"v{gib}", f"s{gib}")
    counter = iter(range(1000))

    def copy(gib: int) -> Callable[[], object]:
        return lambda: conn.copy_object("snapshots", f"s{gib}", f"/cp/c{gib}-{next(counter)}")

    flat = {gib: timed(copy(gib), runs) for gib in (1, 100)}

    def byte_copy() -> None:
        out = srv.config.parent / "bytecopy"
        subprocess.run(["cp", "--reflink=never", str(written), str(out)], check=True)
        subprocess.run(["sync", str(out)], check=True)
        out.unlink()

    cp = timed(byte_copy, runs)
    return [
        ["COPY 1 GiB", f"{flat[1] * 1000:.1f}", f"{cp / flat[1]:.0f}x faster than cp"],
        ["COPY 100 GiB", f"{flat[100] * 1000:.1f}", f"{flat[100] / flat[1]:.2f}x the 1 GiB COPY"],
        ["cp 1 GiB (bytes)", f"{cp * 1000:.1f}", ""],
    ]


def bench_sync(srv: Server, image: Path, runs: int) -> list[list[str]]:
    """A full PUT of the image vs ``atoll object sync`` of it with 1 % of its blocks changed."""
    conn = srv.swift()
    conn.put_container("sync")
    size = image.stat().st_size
    with open(image, "rb") as f:
        conn.put_object("sync", "full", f, content_length=size)
    with open(image, "rb") as f:
        full = timed(lambda: (f.seek(0), conn.put_object("sync", "image", f, content_length=size)), runs)
    blocks = size // BLOCK_SIZE
    pw = srv.config.parent / "pw"
    pw.write_text(srv.password)
    sent, times = [], []
    for run in range(runs):
        with open(image, "r+b") as f:  # a fresh 1 % of the blocks changes each run
            for i in range(max(1, blocks // 100)):
                f.seek(((i * 97 + run * 13) % blocks) * BLOCK_SIZE + 17)
                f.write(os.urandom(512))
        start = time.perf_counter()
        out = subprocess.run(
            [PY, "-m", "provider", "-o", "json", "object", "sync", str(image), "sync/image", "--url", srv.url,
             "--user", f"{srv.project}:bench", "--password-file", str(pw)],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        times.append(time.perf_counter() - start)
        sent.append(json.loads(out)["bytes_sent"])
    secs, nbytes = statistics.median(times), statistics.median(sent)
    return [
        ["full PUT", f"{full:.2f}", f"{size}", "1.00", "1.000"],
        ["sync, 1 % changed", f"{secs:.2f}", f"{nbytes:.0f}", f"{secs / full:.3f}", f"{nbytes / size:.4f}"],
    ]


@contextlib.contextmanager
def xfs(workdir: Path) -> Iterator[Path | None]:
    """A reflink XFS on a loop device that writes to its backing file with direct I/O, so the store's
    writeback reaches the disk as it would on a real one (a buffered loop device keeps a second copy of
    every write in the page cache, and an fsync in the store then waits for that copy too)."""
    if os.geteuid() != 0:
        yield None
        return
    img, mnt = workdir / "xfs.img", workdir / "xfs"
    mnt.mkdir(exist_ok=True)
    with open(img, "wb") as f:
        f.truncate(40 * GiB)
    subprocess.run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", str(img)], check=True)
    dev = subprocess.run(
        ["losetup", "--direct-io=on", "--find", "--show", str(img)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    try:
        subprocess.run(["mount", dev, str(mnt)], check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
        img.unlink()


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def run_backend(backend: str, base: Path, args: argparse.Namespace) -> str:
    with serve(base / f"store-{backend}", backend) as srv:
        src = written_file(base / "put.raw", args.put_gib * GiB)
        image = written_file(base / "sync.raw", args.sync_gib * GiB)
        out = f"### {backend} backend\n\n"
        if not args.skip_put:
            rows = bench_put_get(srv, src, args.runs)
            out += table(["operation", "s", "MiB/s", "vs CLI"], rows) + "\n"
        out += table(["operation", "ms", "ratio"], bench_copy(srv, src, args.runs)) + "\n"
        out += table(
            ["upload", "s", "bytes sent", "time vs full", "bytes vs full"], bench_sync(srv, image, args.runs)
        )
        src.unlink()
        image.unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--put-gib", type=int, default=2)
    parser.add_argument("--sync-gib", type=int, default=1)
    parser.add_argument("--backends", default="qcow2,reflink")
    parser.add_argument("--skip-put", action="store_true", help="only COPY and sync")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    sections = []
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="atoll-bench-") as tmp:
        root = Path(tmp)
        for backend in args.backends.split(","):
            if backend == "reflink":
                with xfs(root) as mnt:
                    if mnt is None:
                        print("not root: the reflink backend is not measured", file=sys.stderr)
                        continue
                    sections.append(run_backend(backend, mnt, args))
            else:
                sections.append(run_backend(backend, root, args))
    load = os.getloadavg()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    head = (f"## Object API, {args.backends} (bench/api_objects.py)\n\n"
            f"{platform.node()}, {os.cpu_count()} CPUs, load "
            f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the end, {when}, runs={args.runs} (median), "
            f"PUT/GET {args.put_gib} GiB, sync {args.sync_gib} GiB\n\n")  # fmt: skip
    text = head + "\n".join(sections)
    print(text)
    write_section(f"## Object API, {args.backends} ", text)


if __name__ == "__main__":
    main()
