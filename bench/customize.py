"""Benchmark: Atoll's customization engine against libguestfs (virt-resize + virt-customize), same image.

Needs ./scripts/install-deps.sh --bench (libguestfs).
Usage (root): python -m bench.customize [--runs 3] [--guestfs-runs 2] [--no-guestfs] [--write]
The image is the cached bootable debootstrap disk (GPT, ext4, 1.5 GiB) from tests/images; it is grown to
4 GiB. --write puts the table into bench/RESULTS.md under its own heading (other sections are kept).
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import results
from customization.engine import customize
from customization.params import InjectedFile, InstanceParams, Secret
from tests.images import build

GROW = 4 << 30
HEADING = "## Customization: Atoll engine vs libguestfs (bench/customize.py)"
GUESTFS_ENV = {"LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}  # KVM hangs here
NO_GROW = {"EXCLUDE_TASK_FixPartitionTable": "yes", "EXCLUDE_TASK_FilesystemResize": "yes"}


class Inputs:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.password = secrets.token_urlsafe(12)
        (work / "pw").write_text(self.password + "\n")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "key")], check=True)
        self.key = (work / "key.pub").read_text().strip()
        (work / "data.bin").write_bytes(os.urandom(4096))

    def params(self) -> InstanceParams:
        data = (self.work / "data.bin").read_bytes()
        files = (InjectedFile("/etc/atoll/data.bin", data, "root", "root", 0o640),)
        return InstanceParams(
            hostname="bench-vm", password=Secret(self.password), ssh_keys=(self.key,), files=files
        )

    def virt_customize_args(self) -> list[str]:
        return [
            "--hostname", "bench-vm", "--root-password", f"file:{self.work / 'pw'}",
            "--ssh-inject", f"root:file:{self.work / 'key.pub'}",
            "--delete", "/etc/ssh/ssh_host_*", "--run-command", "ssh-keygen -A",
            "--write", f"/etc/machine-id:{secrets.token_hex(16)}",
            "--mkdir", "/etc/atoll", "--upload", f"{self.work / 'data.bin'}:/etc/atoll/data.bin",
            "--chmod", "0640:/etc/atoll/data.bin",
        ]  # fmt: skip


def _timed(runs: int, prepare: Callable[[int], Path], action: Callable[[Path], None]) -> list[float]:
    times = []
    for i in range(runs):
        target = prepare(i)
        start = time.monotonic()
        action(target)
        times.append(time.monotonic() - start)
        target.unlink()
    return times


def _guestfs(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **GUESTFS_ENV})
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {proc.stderr.strip()[-800:]}")


def run(runs: int, guestfs_runs: int, use_guestfs: bool) -> list[tuple[str, str, list[float]]]:
    source, _ = build.cached(build.ImageSpec("boot", "gpt", "ext4", "root", 1536 << 20))
    rows: list[tuple[str, str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="atoll-bench-") as tmp:
        work = Path(tmp)
        inputs = Inputs(work)

        def copy(i: int) -> Path:
            return build.copy(source, work / f"disk{i}.img")

        def atoll(props: dict[str, str], **kw: object) -> Callable[[Path], None]:
            return lambda p: _ok(customize(p, props, inputs.params(), **kw))  # type: ignore[arg-type]

        props = {"OSFAMILY": "linux", "ROOT_PARTITION": "1", "USERS": "root"}
        rows.append(("Atoll (debugfs)", "full", _timed(runs, copy, atoll(props, grow_to=GROW))))
        rows.append(
            ("Atoll (mount)", "full", _timed(runs, copy, atoll(props, grow_to=GROW, backend="mount")))
        )
        rows.append(("Atoll (debugfs)", "no grow", _timed(runs, copy, atoll({**props, **NO_GROW}))))
        if use_guestfs:
            _guestfs(
                ["virt-customize", "-q", "-a", str(copy(99)), "--hostname", "warmup"]
            )  # build the appliance
            (work / "disk99.img").unlink()

            def virt_customize(p: Path) -> None:
                _guestfs(["virt-customize", "-q", "-a", str(p), *inputs.virt_customize_args()])

            def resize_then_customize(p: Path) -> None:
                out = p.with_suffix(".out")
                with open(out, "wb") as f:
                    f.truncate(GROW)
                _guestfs(["virt-resize", "-q", "--expand", "/dev/sda1", str(p), str(out)])
                virt_customize(out)
                out.unlink()

            rows.append(("virt-customize", "no grow", _timed(guestfs_runs, copy, virt_customize)))
            rows.append(
                ("virt-resize + virt-customize", "full", _timed(guestfs_runs, copy, resize_then_customize))
            )
    return rows


def _ok(report: object) -> None:
    assert getattr(report, "ok", False)


def table(rows: list[tuple[str, str, list[float]]]) -> str:
    median = {(name, scope): statistics.median(t) for name, scope, t in rows}
    lines = [
        "| tool | task set | runs | median s | min s | Atoll (debugfs) is faster by |",
        "|---|---|---|---|---|---|",
    ]
    for name, scope, times in rows:
        ratio = median[(name, scope)] / median[("Atoll (debugfs)", scope)]
        shown = "—" if name == "Atoll (debugfs)" else f"{ratio:.1f}x"
        cells = [name, scope, str(len(times)), f"{statistics.median(times):.2f}", f"{min(times):.2f}", shown]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--guestfs-runs", type=int, default=2)
    parser.add_argument("--no-guestfs", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    use_guestfs = not args.no_guestfs and shutil.which("virt-customize") is not None
    rows = run(args.runs, args.guestfs_runs, use_guestfs)
    about = " ".join(
        [
            f"Machine: {os.cpu_count()} cores, kernel {platform.release()}, shared with other jobs;",
            "libguestfs runs its appliance under QEMU TCG (KVM is unusable here).",
            "Image: bootable debootstrap Debian 12, GPT, ext4, 1.5 GiB, grown to 4 GiB.",
            "Task set: grow partition and filesystem (full only), hostname, root password, SSH key,",
            "replace host keys, machine id, one injected file. Each run works on a fresh sparse copy",
            "(copy time excluded); libguestfs times are warm (appliance already built).",
        ]
    )
    text = "\n".join([HEADING, "", about, "", table(rows), ""])
    return results.publish(HEADING, text, args.write)


if __name__ == "__main__":
    sys.exit(main())
