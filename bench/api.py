"""Benchmark: the Image API (atoll serve) against the CLI and dd, and under 32 concurrent clients.

Usage: python -m bench.api [--size 2G] [--rss-size 10G] [--images 1000] [--seconds 15] [--write]

- Upload and download of one image through the API (requests, 1 MiB chunks, keep-alive) vs
  ``atoll object upload/download`` vs ``dd`` into and out of the store's filesystem; all fsync.
- The server's RSS (all gunicorn processes) while a --rss-size upload streams in (chunked).
- 32 clients played by wrk (bench/wrk.py; install it with ``scripts/install-deps.sh --bench``), each a
  keep-alive connection: GET /v2/images/{id} and the image list (a page of 25, and all 1,000 with
  limit=1000) over a store of --images images, first closed loop (each client sends its next request
  as soon as it has an answer: the server's saturation throughput, latency is mostly queueing) then
  with a second of think time per client; p50/p99 per row, with the same service call in-process as
  the reference.
--write puts the table into bench/RESULTS.md under its own heading.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests

from bench import results, wrk
from provider.services.image_list import ImageQuery
from provider.utils.sizes import parse_size
from tests.api.conftest import ApiServer, start_server

HEADING = "## Image API: atoll serve vs CLI vs dd, 32 clients (bench/api.py)"
CHUNK = 1 << 20
CLIENTS = 32
THINK_MS = (1000, 0)  # each client waits ~1 s (0.5 to 1.5 s) after an answer; then closed loop


def make_file(path: Path, size: int) -> Path:
    block = os.urandom(4 << 20)
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
        f.write(block[: size % len(block)])
    return path


def timed(fn: Callable[[], object]) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def memory_of_tree(pid: int) -> tuple[int, int]:
    """``(RSS, PSS)`` bytes of ``pid`` and its children (the gunicorn master and workers), summed. RSS
    counts the pages the forked workers share with the master once per process; PSS splits each
    shared page between its sharers, so the PSS sum is the memory the server really holds."""
    rss = pss = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss


def gunicorn_pid(server: ApiServer) -> int:
    """The gunicorn master: the child of the ``python -m provider serve`` process (or that process)."""
    return server.process.pid


def api_transfer(server: ApiServer, src: Path) -> tuple[float, float, str]:
    token = server.token("alice")
    headers = {"X-Auth-Token": token}
    made = requests.post(
        server.url + "/v2/images",
        json={"name": "bench-up", "disk_format": "raw", "container_format": "bare"},
        headers=headers,
        timeout=60,
    ).json()
    url = f"{server.url}/v2/images/{made['id']}/file"

    def up() -> None:
        with open(src, "rb") as f:
            r = requests.put(
                url, data=f, headers={**headers, "Content-Type": "application/octet-stream"}, timeout=3600
            )
            r.raise_for_status()

    def down() -> None:
        with requests.get(url, headers=headers, stream=True, timeout=3600) as r:
            r.raise_for_status()
            for _ in r.iter_content(CHUNK):
                pass

    return timed(up), timed(down), made["id"]


def cli_transfer(server: ApiServer, src: Path) -> tuple[float, float]:
    env = {**os.environ, "ATOLL_CONFIG": str(server.env.config_path)}
    atoll = [sys.executable, "-m", "provider"]
    up = timed(
        lambda: subprocess.run([*atoll, "object", "upload", "bench/cli", str(src)], env=env, check=True)
    )
    down = timed(
        lambda: subprocess.run(
            [*atoll, "object", "download", "bench/cli", "-"], env=env, check=True, stdout=subprocess.DEVNULL
        )
    )
    return up, down


def dd_transfer(server: ApiServer, src: Path) -> tuple[float, float]:
    dst = server.env.config.store.path / "dd.bin"
    up = timed(
        lambda: subprocess.run(
            ["dd", f"if={src}", f"of={dst}", "bs=4M", "conv=fsync", "status=none"], check=True
        )
    )
    down = timed(
        lambda: subprocess.run(["dd", f"if={dst}", "of=/dev/null", "bs=4M", "status=none"], check=True)
    )
    dst.unlink()
    return up, down


def memory_during_upload(server: ApiServer, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(RSS, PSS)`` of the server before, and their peaks while ``size`` bytes stream in chunked."""
    headers = {"X-Auth-Token": server.token("alice")}
    made = requests.post(
        server.url + "/v2/images",
        json={"name": "bench-rss", "disk_format": "raw", "container_format": "bare"},
        headers=headers,
        timeout=60,
    ).json()
    pid = gunicorn_pid(server)
    before = memory_of_tree(pid)
    peak = list(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            now = memory_of_tree(pid)
            peak[:] = [max(a, b) for a, b in zip(peak, now, strict=True)]
            time.sleep(0.2)

    block = os.urandom(CHUNK)

    def body() -> Iterator[bytes]:
        for _ in range(size // CHUNK):
            yield block

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        requests.put(
            f"{server.url}/v2/images/{made['id']}/file",
            data=body(),
            headers={**headers, "Content-Type": "application/octet-stream"},
            timeout=7200,
        ).raise_for_status()
    finally:
        done.set()
        sampler.join()
    requests.delete(f"{server.url}/v2/images/{made['id']}", headers=headers, timeout=60)
    return before, (peak[0], peak[1])


def in_process(fn: Callable[[], object], count: int = 50) -> list[float]:
    return [timed(fn) for _ in range(count)]


def latency_rows(server: ApiServer, images: int, seconds: int) -> list[list[str]]:
    store = server.env.open("alpha", admin=False)
    for i in range(images):
        store.glance.create({"name": f"lat-{i:04d}"}, {}, [])
    store.catalog.analyze()  # what atoll serve does at start and every STATS_EVERY seconds
    one = store.glance.list(ImageQuery(limit=1))[0][0].id
    token = server.token("alice")
    cases = [
        ("GET /v2/images/{id}", f"{server.url}/v2/images/{one}", lambda: store.glance.show(one)),
        ("GET /v2/images (25)", f"{server.url}/v2/images", lambda: store.glance.list(ImageQuery())),
        (
            f"GET /v2/images?limit={images}",
            f"{server.url}/v2/images?limit={images}",
            lambda: store.glance.list(ImageQuery(limit=images)),
        ),
    ]
    rows = []
    for name, url, ref in cases:
        local = statistics.median(in_process(ref)) * 1000
        wrk.run(url, token, clients=CLIENTS, seconds=2)  # warm up connections and caches
        for think in THINK_MS:
            load = wrk.run(url, token, clients=CLIENTS, seconds=seconds, think_ms=think)
            rows.append(
                [
                    name,
                    "none (closed loop)" if not think else f"{think} ms",
                    f"{load.rate:.0f}",
                    f"{load.p50_ms:.1f}",
                    f"{load.p99_ms:.1f}",
                    str(load.errors),
                    f"{local:.1f}",
                ]
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2G")
    parser.add_argument("--rss-size", default="10G")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=15, help="of load per latency row")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    size, rss_size = parse_size(args.size), parse_size(args.rss_size)
    with tempfile.TemporaryDirectory(prefix="atoll-bench-api-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        server = start_server(work / "srv", api={"workers": args.workers, "threads": 16})
        try:
            src = make_file(work / "image.raw", size)
            api_up, api_down, _ = api_transfer(server, src)
            cli_up, cli_down = cli_transfer(server, src)
            dd_up, dd_down = dd_transfer(server, src)
            src.unlink()
            before, peak = memory_during_upload(server, rss_size)
            os.sync()  # the 10 GiB upload's writeback and removal must not run under the latency rows
            time.sleep(10)
            lat = latency_rows(server, args.images, args.seconds)
        finally:
            server.stop()
    mib = size / (1 << 20)
    lines = [
        HEADING,
        "",
        f"Machine: {os.cpu_count()} cores, kernel {platform.release()}, load average "
        f"{os.getloadavg()[0]:.1f} at the end (mostly the run's own closed-loop rows); atoll serve with "
        f"{args.workers} gunicorn gthread workers x 16 threads, qcow2 store, SQLite catalog. Transfers of "
        f"{args.size} (incompressible, not sparse); clients and server on the same machine.",
        "",
        "| path | upload MiB/s | download MiB/s | upload vs CLI | upload vs dd | download vs CLI |",
        "|---|---|---|---|---|---|",
    ]
    for name, up, down in (
        ("API (PUT/GET file)", api_up, api_down),
        ("CLI (atoll object)", cli_up, cli_down),
        ("dd (store filesystem)", dd_up, dd_down),
    ):
        lines.append(
            f"| {name} | {mib / up:.0f} | {mib / down:.0f} | {cli_up / up:.2f}x | {dd_up / up:.2f}x | "
            f"{cli_down / down:.2f}x |"
        )
    lines += [
        "",
        f"Server memory while streaming a {args.rss_size} upload (master and all workers together; goal "
        f"< 200 MiB): RSS {before[0] / 2**20:.0f} MiB before, {peak[0] / 2**20:.0f} MiB peak, growth "
        f"{(peak[0] - before[0]) / 2**20:.0f} MiB; PSS (pages shared by the forked workers counted once) "
        f"{before[1] / 2**20:.0f} MiB before, {peak[1] / 2**20:.0f} MiB peak.",
        "",
        f"{CLIENTS} concurrent clients (wrk, keep-alive connections, {args.seconds} s per row), "
        f"{args.images} images in store; think time: what a client waits after an answer before its next "
        "request:",
        "",
        "| request | think time | req/s | p50 ms | p99 ms | errors | same call in-process, median ms |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in lat]
    text = "\n".join(lines) + "\n"
    return results.publish(HEADING, text, args.write)


if __name__ == "__main__":
    sys.exit(main())
