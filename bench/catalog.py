#!/usr/bin/env python3
"""The catalog at 10,000 resources, against itself at 10, in one run; 32 parallel mixed operations.

For the SQLite catalog and (when PostgreSQL can be started here, or ``$ATOLL_BENCH_PG_URL`` names a server)
the PostgreSQL one, on a qcow2 store:

- ``volume list`` through the library at 10 and at N volumes, against the per-resource load listings
  used before (one load per row: the competitor, same run) and a bare ``SELECT`` of the same rows;
- ``atoll volume list`` through the CLI at 10 and at N volumes (a fresh process each time);
- clone latency (``volume create --from``) at 10 and at N volumes;
- 32 parallel processes doing create, clone, snapshot, grow, delete and attach/detach, some of them meant
  to conflict (a name taken twice, deleting an attached volume); every other outcome is an error; fsck
  must be clean afterwards.

The N - 10 extra volumes are catalog rows inserted in bulk (a listing reads the catalog only); the
volumes the clone and parallel measurements touch are real. Results go to bench/RESULTS.md.

    sudo .venv/bin/python bench/catalog.py [--volumes 10000] [--runs 7] [--no-postgresql]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import write_section
from provider import config as config_mod
from provider.catalog import schema as t
from provider.errors import AlreadyExists, InUse
from provider.services import Caller, Store

MiB = 1 << 20
INTENDED = (AlreadyExists, InUse)


def open_store(config_path: Path) -> Store:
    return Store.open(config_mod.load(config_path), Caller("root", True))


def make_store(base: Path, catalog_url: str) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    raw: dict[str, Any] = {"store": {"backend": "qcow2", "path": str(base)}}
    if catalog_url:
        raw["catalog"] = {"url": catalog_url}
    path = base / "atoll.yaml"
    path.write_text(yaml.safe_dump(raw))
    store = open_store(path)
    image = base / "image.raw"
    with open(image, "wb") as f:
        f.truncate(8 * MiB)
        f.write(b"atoll")
    with open(image, "rb") as f:
        store.objects.upload("images/base.raw", f)
    store.images.register("images/base.raw", "base", properties={"EXCLUDE_ALL_TASKS": "yes"})
    for i in range(10):
        store.volumes.create(f"vol{i:02d}", source="base", ganeti={"VOL_NAME": f"g{i}"})
    return path


def bulk_volumes(store: Store, count: int) -> None:
    """``count`` more volumes as catalog rows only (no data file): what a listing reads."""
    stamp = "2026-12-03T00:00:00.000000Z"
    res, views, ids = [], [], []
    for i in range(count):
        rid = str(uuid.uuid4())
        res.append(
            {"id": rid, "size": MiB, "mode": "rw", "backend": "qcow2", "locator": f"{rid}.qcow2",
             "disk_format": "qcow2", "parent": None, "state": "available", "sha256": None,
             "owner": "root", "created_at": stamp, "updated_at": stamp}
        )  # fmt: skip
        ganeti = {"VOL_NAME": f"bulk-{i}", "VOL_UUID": rid}
        views.append(
            {"resource_id": rid, "name": f"bulk{i:05d}", "status": "available",
             "ganeti": json.dumps(ganeti), "created_at": stamp}
        )  # fmt: skip
        ids += t.ganeti_rows(rid, ganeti)
    with store.catalog.write() as conn:
        for table, rows in ((t.resources, res), (t.volume_views, views), (t.ganeti_ids, ids)):
            for start in range(0, len(rows), 1000):
                conn.execute(table.insert(), rows[start : start + 1000])


def median_ms(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def per_row_list(store: Store) -> list[Any]:
    """The competitor: the listing as it was, one full load per resource."""
    with store.catalog.read() as conn:
        rids = [
            r
            for (r,) in conn.execute(t.volume_views.select().with_only_columns(t.volume_views.c.resource_id))
        ]
        return [store.volumes.load(conn, rid) for rid in rids]


def bare_select(store: Store) -> list[Any]:
    with store.catalog.read() as conn:
        return conn.execute(
            t.resources.join(t.volume_views, t.volume_views.c.resource_id == t.resources.c.id).select()
        ).all()


def cli_list(config_path: Path) -> None:
    argv = [sys.executable, "-m", "provider", "--config", str(config_path), "volume", "list"]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def clone_once(store: Store, i: int) -> None:
    store.volumes.create(f"clone{i:04d}", source="base")


def measure(config_path: Path, label: str, runs: int, counter: Iterator[int]) -> dict[str, float]:
    store = open_store(config_path)
    out = {
        "list": median_ms(store.volumes.list, runs),
        "per_row": median_ms(lambda: per_row_list(store), 1),  # minutes at 10,000: once is enough
        "select": median_ms(lambda: bare_select(store), runs),
        "cli": median_ms(lambda: cli_list(config_path), runs),
        "clone": median_ms(lambda: clone_once(store, next(counter)), runs),
        "count": len(store.volumes.list()),
    }
    print(f"  {label}: " + ", ".join(f"{k} {v:.1f}" for k, v in out.items()), file=sys.stderr)
    return out


# ---- 32 parallel mixed operations -------------------------------------------------------------------
def _op(args: tuple[str, str, str]) -> tuple[str, str, str]:
    config_path, op, name = args
    store = open_store(Path(config_path))
    try:
        if op == "create":
            store.volumes.create(name, size=4 * MiB)
        elif op == "clone":
            store.volumes.create(name, source="base")
        elif op == "snapshot":
            store.volumes.snapshot(name, f"{name}-snap")
        elif op == "grow":
            store.volumes.grow(name, 16 * MiB)
        elif op == "delete":
            store.volumes.delete(name)
        elif op == "attach-detach":
            store.volumes.attach(name, userspace=True)
            store.volumes.detach(name)
        return op, name, "ok"
    except INTENDED as e:
        return op, name, f"conflict: {type(e).__name__}: {e}"
    except Exception as e:  # the benchmark counts every other failure as an error
        return op, name, f"error: {type(e).__name__}: {e}"


def parallel(config_path: Path) -> dict[str, Any]:
    store = open_store(config_path)
    for i in range(20):
        store.volumes.create(f"p{i:02d}", source="base")
    for name in ("p18", "p19"):
        store.volumes.attach(name, userspace=True)  # deleting these is a conflict meant to happen
    ops = [("clone", f"new{i}") for i in range(6)] + [("create", f"empty{i}") for i in range(4)]
    ops += [("clone", "twice"), ("clone", "twice")]  # one of the two must be refused
    ops += [("snapshot", f"p{i:02d}") for i in range(6)] + [("grow", f"p{i:02d}") for i in range(6, 10)]
    ops += [("delete", f"p{i:02d}") for i in range(10, 14)] + [
        ("attach-detach", f"p{i:02d}") for i in range(14, 18)
    ]
    ops += [("delete", "p18"), ("delete", "p19")]
    assert len(ops) == 32
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(32) as pool:
        results = pool.map(_op, [(str(config_path), op, name) for op, name in ops])
    elapsed = time.perf_counter() - start
    for name in ("p18", "p19"):
        store.volumes.detach(name)
    report = store.fsck.run()
    errors = [r for r in results if r[2].startswith("error")]
    conflicts = [r for r in results if r[2].startswith("conflict")]
    return {
        "seconds": elapsed,
        "ok": sum(r[2] == "ok" for r in results),
        "conflicts": conflicts,
        "errors": errors,
        "fsck_clean": report.clean and not report.findings,
        "fsck": [f.to_dict() for f in report.findings],
    }


# ---- running and reporting --------------------------------------------------------------------------
@contextlib.contextmanager
def postgres_url(enabled: bool) -> Iterator[str | None]:
    given = os.environ.get("ATOLL_BENCH_PG_URL")
    if not enabled:
        yield None
    elif given:
        yield given
    else:
        from tests import daemons

        with daemons.postgres() as server:
            yield server.exports.get("ATOLL_PG_URL") if server.ok else None


def run_catalog(kind: str, new_url: Callable[[], str], base: Path, volumes: int, runs: int) -> dict[str, Any]:
    """``new_url`` gives an empty catalog each call ('' for SQLite inside the store directory)."""
    print(f"{kind}: setting up", file=sys.stderr)
    config_path = make_store(base / kind, new_url())
    counter = iter(range(100000))
    small = measure(config_path, f"{kind} at 10", runs, counter)
    bulk_volumes(open_store(config_path), volumes - int(small["count"]))
    large = measure(config_path, f"{kind} at {volumes}", runs, counter)
    par = parallel(make_store(base / f"{kind}-parallel", new_url()))
    return {"small": small, "large": large, "parallel": par}


def table(results: dict[str, dict[str, Any]], volumes: int) -> str:
    lines = [
        f"| catalog | measure | at 10 (ms) | at {volumes} (ms) | ratio | goal |",
        "|---|---|---|---|---|---|",
    ]
    for kind, r in results.items():
        s, g = r["small"], r["large"]
        lines.append(
            f"| {kind} | `volume list`, library | {s['list']:.1f} | {g['list']:.1f} | — "
            f"| < 100 ms at {volumes} |"
        )
        lines.append(
            f"| {kind} | competitor: one load per row | {s['per_row']:.1f} | {g['per_row']:.1f} | "
            f"{g['per_row'] / g['list']:.1f}x slower than one query | — |"
        )
        lines.append(
            f"| {kind} | bare SELECT of the same rows | {s['select']:.1f} | {g['select']:.1f} | — | — |"
        )
        lines.append(
            f"| {kind} | `atoll volume list`, CLI | {s['cli']:.0f} | {g['cli']:.0f} "
            f"| {g['cli'] / s['cli']:.2f} | < 1.5 |"
        )
        lines.append(
            f"| {kind} | clone latency | {s['clone']:.1f} | {g['clone']:.1f} "
            f"| {g['clone'] / s['clone']:.2f} | ≤ 1.2 |"
        )
    lines += [
        "",
        "| catalog | 32 parallel operations | ok | intended conflicts | errors | fsck after |",
        "|---|---|---|---|---|---|",
    ]
    for kind, r in results.items():
        p = r["parallel"]
        kinds = sorted({c[2].split(":")[1].strip() for c in p["conflicts"]})
        lines.append(
            f"| {kind} | {p['seconds']:.1f} s | {p['ok']} | {len(p['conflicts'])} ({', '.join(kinds)}) | "
            f"{len(p['errors'])} | {'clean' if p['fsck_clean'] else 'NOT CLEAN'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--volumes", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-postgresql", action="store_true")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/RESULTS.md")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="atoll-bench-catalog-") as tmp:
        results["SQLite"] = run_catalog("sqlite", lambda: "", Path(tmp), args.volumes, args.runs)
        with postgres_url(not args.no_postgresql) as pg:
            if pg:
                from tests import daemons

                server = pg
                results["PostgreSQL"] = run_catalog(
                    "postgresql", lambda: daemons.new_schema(server), Path(tmp), args.volumes, args.runs
                )
    text = table(results, args.volumes)
    print(text)
    for kind, r in results.items():
        for problem in r["parallel"]["errors"] + r["parallel"]["fsck"]:
            print(f"{kind}: {problem}", file=sys.stderr)
    if not args.no_record:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        header = (
            "## Catalog at scale (bench/catalog.py)\n\n"
            f"`sudo .venv/bin/python bench/catalog.py --volumes {args.volumes} --runs {args.runs}`. Machine: "
            f"{os.cpu_count()} cores, kernel {platform.release()}, load average {load} at the end of "
            "the run (mostly the run's own 32 parallel operations). qcow2 store; medians. The extra "
            "volumes are catalog rows inserted in bulk (a listing reads only the catalog); clones and the "
            "parallel operations use real volumes.\n\n"
        )
        write_section("## Catalog at scale (bench/catalog.py)", header + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
