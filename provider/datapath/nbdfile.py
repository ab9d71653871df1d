"""A userspace attachment as a local file, for as long as a block runs.

Tools that need a disk on this host — the customization engine in Ganeti's OS ``create``, which runs
while Ganeti holds the volume attached with access=userspace — get it through ``nbdfuse``: an NBD export
(qcow2) as a second NBD client of the same qemu-storage-daemon (no second writer on the image file); an
``rbd:`` URI through a private ``qemu-nbd`` that nbdfuse starts by socket activation and stops at unmount
(QEMU is not running yet while the OS definition works on the disk).
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from atoll_common import process
from provider.errors import DataPathError

LOG = logging.getLogger(__name__)
PREFIX = "nbd:unix:"
RBD_PREFIX = "rbd:"
READY_TIMEOUT = 60.0


@contextmanager
def nbd_file(uri: str, run: process.Runner = process.run, *, readonly: bool = False) -> Iterator[Path]:
    """The disk at ``uri`` (``nbd:unix:SOCKET`` or ``rbd:…``) as a file, unmounted when the block ends."""
    if uri.startswith(PREFIX):
        source = ["--unix", uri[len(PREFIX) :]]
    elif uri.startswith(RBD_PREFIX):
        ro = ["--read-only"] if readonly else []
        source = ["[", "qemu-nbd", "--format=raw", "--cache=none", *ro, uri, "]"]
    else:
        raise DataPathError(reason=f"{uri} is neither an NBD export on a unix socket nor an rbd: URI")
    with tempfile.TemporaryDirectory(prefix="atoll-nbdfuse-") as tmp:
        mnt, pidfile = Path(tmp) / "mnt", Path(tmp) / "pid"
        mnt.mkdir()
        argv = ["nbdfuse", "-P", str(pidfile), *(["-r"] if readonly else []), f"{mnt}/disk", *source]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _wait_ready(proc, pidfile)
            yield mnt / "disk"
        finally:
            run(["fusermount3", "-u", str(mnt)], check=False)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen[str], pidfile: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not pidfile.exists():
        if proc.poll() not in (None, 0):
            err = proc.stderr.read().strip() if proc.stderr else ""
            raise DataPathError(reason=f"nbdfuse failed: {err or proc.returncode}")
        if time.monotonic() > deadline:
            raise DataPathError(reason="nbdfuse did not come up")
        time.sleep(0.05)
    LOG.debug("NBD export mounted by nbdfuse (pid %s)", pidfile.read_text().strip())
