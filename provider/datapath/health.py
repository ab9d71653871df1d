"""Whether a recorded attachment still works, from the record alone: no backend, no catalog.

The attachers' ``healthy`` and the ExtStorage fast path of ``attach`` (provider/ganeti/fast.py) both ask
here, so the answer Ganeti gets without the services is the one the services would give.
"""

from __future__ import annotations

import os
from pathlib import Path

from provider.datapath import daemon, loop
from provider.datapath.qmp import Qmp
from provider.errors import DataPathError


def file_ok(device: str | None, path: str | None) -> bool:
    """A raw file: QEMU opens it (userspace), or a loop device still backed by it (kernelspace)."""
    if device is None:
        return path is not None and os.path.exists(path)
    return loop.backing_file(device) == path


def qsd_ok(run_dir: Path, resource_id: str, device: str | None) -> bool:
    """A qemu-storage-daemon export: the daemon is alive, still exports the volume, and the loop device
    (kernelspace) is still backed by its FUSE file."""
    d = daemon.DaemonDir.for_resource(run_dir, resource_id)
    if daemon.pid_of(d) is None:
        return False
    if device is not None and loop.backing_file(device) != str(d.fuse):
        return False
    try:
        with Qmp(d.qmp, timeout=10) as q:
            return any(e["id"] == daemon.EXPORT_ID for e in q.execute("query-block-exports"))
    except DataPathError:
        return False
