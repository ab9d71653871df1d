"""Supervision of qemu-storage-daemon (QSD): one daemon per attached qcow2 resource, found again later
through its pid file and QMP socket under ``<store>/run/<resource id>/``, so it outlives the CLI."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atoll_common import process
from provider.datapath.qmp import Qmp
from provider.errors import DataPathError

LOG = logging.getLogger(__name__)

# sun_path holds 108 bytes; longer socket paths go to a short alias directory.
SOCKET_PATH_MAX = 100
ALIAS_ROOT = Path("/run/atoll")
EXPORT_ID = "exp"


@dataclass(frozen=True)
class DaemonDir:
    """Where one daemon keeps its state: pid file and FUSE file in ``path``, sockets in ``sockets``."""

    path: Path
    sockets: Path

    @classmethod
    def for_resource(cls, run_dir: Path, rid: str) -> DaemonDir:
        path = run_dir / rid
        if len(str(path / "nbd.sock")) <= SOCKET_PATH_MAX:
            return cls(path, path)
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:20]
        return cls(path, ALIAS_ROOT / digest)

    @property
    def pidfile(self) -> Path:
        return self.path / "qsd.pid"

    @property
    def fuse(self) -> Path:
        return self.path / "disk"

    @property
    def qmp(self) -> Path:
        return self.sockets / "qmp.sock"

    @property
    def nbd(self) -> Path:
        return self.sockets / "nbd.sock"

    def prepare(self) -> None:
        for d in {self.path, self.sockets}:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)

    def remove(self) -> None:
        for d in {self.path, self.sockets}:
            shutil.rmtree(d, ignore_errors=True)


def _escape(value: str) -> str:
    """QemuOpts values double their commas."""
    return value.replace(",", ",,")


def pid_of(d: DaemonDir) -> int | None:
    """The pid of the live daemon that owns ``d`` (a reused or zombie pid does not count)."""
    try:
        pid = int(d.pidfile.read_text().strip())
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
        return None
    if not cmdline or not cmdline[0].endswith(b"qemu-storage-daemon"):
        return None
    return pid if str(d.pidfile).encode() in cmdline else None


def fuse_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].encode().decode("unicode_escape")
            if mnt == target:
                return True
    return False


def start(
    run: process.Runner,
    d: DaemonDir,
    blockdev: dict[str, Any],
    export: dict[str, Any],
    *,
    nbd: bool,
) -> int:
    """Start a daemon serving ``blockdev`` through ``export``; return its pid once the export is up."""
    d.prepare()
    for stale in (d.qmp, d.nbd, d.pidfile):
        stale.unlink(missing_ok=True)
    if export["type"] == "fuse":
        d.fuse.touch(mode=0o600, exist_ok=True)  # FUSE mounts the export over a regular file
    argv = [
        process.which("qemu-storage-daemon", hint="apt-get install qemu-system-common"),
        "--daemonize",
        "--pidfile", str(d.pidfile),
        "--chardev", f"socket,id=qmp,path={_escape(str(d.qmp))},server=on,wait=off",
        "--monitor", "chardev=qmp",
        "--blockdev", json.dumps(blockdev),
    ]  # fmt: skip
    if nbd:
        argv += ["--nbd-server", json.dumps({"addr": {"type": "unix", "path": str(d.nbd)}})]
    argv += ["--export", json.dumps(export)]
    try:
        run(argv, timeout=120)
    except process.ProcessError as e:
        raise DataPathError(reason=f"qemu-storage-daemon did not start: {e.stderr.strip()}") from e
    pid = pid_of(d)
    if pid is None:
        raise DataPathError(reason=f"qemu-storage-daemon for {d.path.name} exited right after starting")
    LOG.info("qemu-storage-daemon %d serves %s", pid, d.path.name)
    return pid


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def stop(run: process.Runner, d: DaemonDir, timeout: float = 30.0) -> None:
    """Stop the daemon (QMP quit flushes; then SIGTERM, then SIGKILL), unmount a stale FUSE file and
    remove the state; stopping what is already gone is not an error."""
    pid = pid_of(d)
    if pid is not None:
        try:
            with Qmp(d.qmp, timeout=5) as q:
                q.execute("quit")
        except DataPathError as e:
            LOG.warning("daemon %d did not take quit (%s): terminating it", pid, e)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if _wait_gone(pid, timeout):
                break
            LOG.warning("daemon %d still runs: sending %s", pid, sig.name)
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
        else:
            if not _wait_gone(pid, timeout):
                raise DataPathError(reason=f"qemu-storage-daemon {pid} does not stop")
    unmount_stale(run, d)
    d.remove()


def unmount_stale(run: process.Runner, d: DaemonDir) -> None:
    """A daemon killed hard leaves its FUSE mount behind ("transport endpoint is not connected")."""
    if fuse_mounted(d.fuse):
        result = run(["umount", str(d.fuse)], check=False)
        if result.exit_code != 0 and fuse_mounted(d.fuse):
            run(["umount", "--lazy", str(d.fuse)])
