"""bench/ganeti_verbs: what one ExtStorage call costs — Atoll against a trivial shell provider and a bare
``python3 -c pass``, in the same run, interleaved (the verbs Ganeti repeats: ``attach`` of an attached
disk, ``verify``, ``setinfo``, ``open``, ``close``).

Each call is a fresh process started the way Ganeti starts it (the provider's script, nothing but the
VOL_*/EXTP_* variables in the environment); Atoll's scripts hand the call to the verb server (up before
the first measured call), and a column with ``--no-prefork`` scripts shows the cold start. Needs root
(loop devices, the XFS for reflink). Run through bench/ganeti.py (``--part verbs``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provider.ganeti import install
from tests.conftest import make_store_env, write_disk
from tests.ganeti.conftest import register_image

REPO = Path(__file__).resolve().parents[1]
TRIVIAL = REPO / "bench" / "trivial" / "extstorage.sh"
TRIVIAL_VERBS = ("create", "attach", "detach", "remove", "grow", "setinfo", "verify", "open", "close")
VOL = "5e0a3f4c-2b1d-4c6e-9f70-1a2b3c4d5e6f.ext.disk0"
GOAL_MS = 150.0
PY, SHIM = "python3 -c pass", "shim interpreter -S -c pass"
# (row label, verb, extra environment); every call also gets VOL_NAME.
CALLS = [
    ("attach, attached (kernelspace)", "attach", {"EXTP_ACCESS": "kernelspace"}),
    ("verify", "verify", {"EXTP_ORIGIN": "img"}),
    ("setinfo", "setinfo", {"VOL_METADATA": "originstname+bench1"}),
    ("open", "open", {"VOL_OPEN_EXCLUSIVE": "True"}),
    ("close", "close", {}),
]


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


def install_trivial(directory: Path) -> Path:
    """The trivial provider as Ganeti wants it: one executable per verb and a parameters.list."""
    directory.mkdir(parents=True, exist_ok=True)
    for verb in TRIVIAL_VERBS:
        shutil.copy(TRIVIAL, directory / verb)
        (directory / verb).chmod(0o755)
    (directory / "parameters.list").write_text("")
    return directory


def call(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """Run one call the way Ganeti does; its wall time in milliseconds (it must succeed)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return elapsed


def ext(directory: Path, verb: str, env: dict[str, str]) -> float:
    return call([str(directory / verb)], {"VOL_NAME": VOL, **env}, directory)


def atoll_provider(backend: str, store_dir: Path, base: Path, image: Path, prefork: bool = True) -> Path:
    """Atoll's scripts for a fresh store on ``backend``, with volume VOL cloned from ``img`` and attached
    (``prefork``: the calls go to the verb server, which the first of these calls starts)."""
    env = make_store_env(backend, store_dir, "")
    register_image(env, image, "img")
    dirs = {name: base / name for name in ("extstorage", "os", "hooks", "logs")}
    install.install(
        sys.executable,
        str(env.config_path),
        extstorage_dir=dirs["extstorage"],
        os_dir=dirs["os"],
        hooks_dir=dirs["hooks"],
        log_dir=dirs["logs"],
        prefork=prefork,
    )
    provider = dirs["extstorage"] / "atoll"
    ext(provider, "create", {"VOL_SIZE": "64", "EXTP_ORIGIN": "img"})
    ext(provider, "attach", {"EXTP_ACCESS": "kernelspace"})
    return provider


def server_up(provider: Path, prefix: tuple[str, ...] = ()) -> None:
    """Call ``provider``'s verify until the verb server is up (the first call on a node starts it);
    ``prefix`` runs the calls where Ganeti runs them (``nsenter --uts=…``: a server per namespace)."""
    key = install.server_key(sys.executable, install.import_path(sys.executable) or [])
    where = f"from provider.ganeti import relay; print(relay.socket_path({key!r}))"
    probe = [*prefix, sys.executable, "-c", where]
    socket = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
    deadline = time.monotonic() + 60
    while not os.path.exists(socket):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no verb server at {socket} after a minute")
        verify = [*prefix, str(provider / "verify")]
        subprocess.run(verify, env={"VOL_NAME": VOL}, capture_output=True, check=False)
        time.sleep(0.5)


def measure(runs: int) -> tuple[dict[str, dict[str, list[float]]], list[str]]:
    """Samples per row and column; the columns in display order."""
    samples: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="atoll-bench-verbs-") as tmp, xfs(Path(tmp), 1 << 30) as mnt:
        base = Path(tmp)
        image = write_disk(base / "img.raw", 32 << 20)
        providers = {
            "Atoll qcow2": atoll_provider("qcow2", base / "qcow2-store", base / "qcow2", image),
            "Atoll reflink": atoll_provider("reflink", mnt / "store", base / "reflink", image),
            "Atoll qcow2 --no-prefork": atoll_provider(
                "qcow2", base / "cold-store", base / "cold", image, prefork=False
            ),
        }
        server_up(providers["Atoll qcow2"])
        trivial = install_trivial(base / "trivial")
        trivial_env = {"TRIVIAL_DIR": str(base / "trivial-disks")}
        ext(trivial, "create", {**trivial_env, "VOL_SIZE": "64"})
        ext(trivial, "attach", trivial_env)
        # the interpreter the shims run, started the same way (without site): what any Python provider
        # here pays
        shim_python = [sys.executable, "-S", "-P", "-c", "pass"]
        columns = ["trivial sh provider", PY, SHIM, *providers]
        try:
            for _ in range(runs):
                for label, verb, extra in CALLS:
                    row = samples.setdefault(label, {c: [] for c in columns})
                    row["trivial sh provider"].append(ext(trivial, verb, {**trivial_env, **extra}))
                    row[PY].append(call(["python3", "-c", "pass"], {}, base))
                    row[SHIM].append(call(shim_python, {}, base))
                    for name, provider in providers.items():
                        row[name].append(ext(provider, verb, extra))
        finally:
            for provider in providers.values():
                subprocess.run([str(provider / "remove")], env={"VOL_NAME": VOL}, cwd=provider, check=False)
            subprocess.run([str(trivial / "remove")], env={"VOL_NAME": VOL, **trivial_env}, check=False)
    return samples, columns


def table(samples: dict[str, dict[str, list[float]]], columns: list[str], runs: int) -> str:
    atoll = [c for c in columns if c.startswith("Atoll")]
    head = ["call", *(f"{c} ms" for c in columns), *(f"{c} / python3" for c in atoll)]
    head += [f"{c} / shim interpreter" for c in atoll]
    rows = [
        f"Median of {runs} interleaved calls per cell (ms); goal: Atoll ≤ {GOAL_MS:.0f} ms per verb.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for label, cells in samples.items():
        med = {c: statistics.median(v) for c, v in cells.items()}
        ratios = [f"{med[c] / med[PY]:.2f}x" for c in atoll]
        ratios += [f"{med[c] / med[SHIM]:.2f}x" for c in atoll]
        rows.append("| " + " | ".join([label, *(f"{med[c]:.0f}" for c in columns), *ratios]) + " |")
    worst = max(statistics.median(cells[c]) for cells in samples.values() for c in atoll)
    verdict = "meets" if worst <= GOAL_MS else "misses"
    rows += ["", f"Slowest Atoll median: {worst:.0f} ms ({verdict} the {GOAL_MS:.0f} ms goal)."]
    return "\n".join(rows)


def bench_verbs(runs: int) -> str:
    samples, columns = measure(runs)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return table(samples, columns, runs) + f"\nLoad average at the end: {load}."
