"""``qemu-img`` under limits: a second opinion on an inspected image, and its conversion to raw.

Both run under ``prlimit`` (address space, CPU seconds) and ``timeout`` (wall clock), with the source
format always given (``-f``): ``qemu-img`` never probes an upload. Only images the inspector accepted
get here; ``qemu-img info`` then double-checks that nothing names a file outside the upload.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from atoll_common import process
from provider.errors import AtollError
from provider.imaging.inspect import ImageRefused

LOG = logging.getLogger(__name__)

_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")
_TIMED_OUT = (124, 137)  # timeout(1): the command timed out / was killed after the grace period


class ConversionFailed(AtollError):
    message = "conversion failed: %(reason)s"


@dataclass(frozen=True)
class Limits:
    """What one ``qemu-img`` run may use: wall-clock seconds (CPU seconds too) and address space."""

    timeout: float
    memory: int


def bounded(argv: Sequence[str], limits: Limits) -> list[str]:
    """``argv`` wrapped in prlimit (address space, CPU time) and timeout (wall clock, then SIGKILL).

    Two malloc arenas: glibc reserves 64 MiB of address space per arena, up to eight per core, one per
    thread that allocates; qemu-img's I/O threads (many with ``-t none -W``) then hit the address-space
    limit with little memory in use (thread creation fails, EAGAIN), more often on a busy machine."""
    seconds = max(1, int(limits.timeout))
    return [
        process.which("env"),
        "MALLOC_ARENA_MAX=2",
        process.which("prlimit"),
        f"--as={limits.memory}",
        f"--cpu={seconds}",
        "--",
        process.which("timeout"),
        "--kill-after=5",
        str(seconds),
        *argv,
    ]


def check_info(
    source: str, fmt: str, virtual_size: int, limits: Limits, run: process.Runner = process.run
) -> None:
    """``qemu-img info`` on an inspected image: no backing file, no external data file, only the upload
    as extent, and the virtual size the inspector read.

    :raises ImageRefused: when qemu-img disagrees with the inspector.
    """
    argv = [process.which("qemu-img"), "info", "--output=json", "-f", fmt, source]
    result = run(bounded(argv, limits), check=False)
    if result.exit_code != 0:
        last = result.stderr.strip().splitlines()[-1:] or ["timed out"]
        raise ImageRefused(reason=f"qemu-img cannot read the {fmt} image: {last[0]}")
    info = json.loads(result.stdout)
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise ImageRefused(reason=f"the {fmt} image names a backing file")
    data = (info.get("format-specific") or {}).get("data") or {}
    if data.get("data-file"):
        raise ImageRefused(reason=f"the {fmt} image names an external data file")
    for extent in data.get("extents") or []:
        if extent.get("filename") != source:
            raise ImageRefused(reason=f"the {fmt} image has an extent outside the upload")
    if info.get("virtual-size") != virtual_size:
        raise ImageRefused(
            reason=f"qemu-img reads a virtual size of {info.get('virtual-size')} bytes where the header "
            f"says {virtual_size}"
        )


def convert(
    source: str,
    fmt: str,
    target: Path,
    limits: Limits,
    *,
    progress: Callable[[float], None] | None = None,
    direct: bool = False,
) -> None:
    """Convert the ``fmt`` image ``source`` (a path, e.g. ``/proc/PID/fd/N`` of a file opened once) to a
    new sparse raw file ``target``; ``progress`` gets the percentage done. ``direct``: write with
    O_DIRECT, out of order, and flush at the end (``-t none -W``): the result is on disk when qemu-img
    returns, and the writes overlapped the reads, where a buffered conversion leaves every byte to a
    final fsync (twice as slow on this kind of machine). For a target that stays where it is written.

    :raises ConversionFailed: with qemu-img's last error line, or the limit that stopped it.
    """
    cache = ["-t", "none", "-W"] if direct else []
    argv = [process.which("qemu-img"), "convert", "-p", *cache, "-f", fmt, "-O", "raw", source, str(target)]
    with process.start(bounded(argv, limits)) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        _follow(proc.stdout.fileno(), progress)
        stderr = proc.stderr.read().decode(errors="replace")
        code = proc.wait()
    if code != 0:
        target.unlink(missing_ok=True)
        if code in _TIMED_OUT:
            reason = f"qemu-img convert ran out of its {int(limits.timeout)} s limit"
        else:
            lines = stderr.strip().splitlines()
            reason = lines[-1] if lines else f"qemu-img convert exited with code {code}"
        raise ConversionFailed(reason=reason)


def direct_io(directory: Path) -> bool:
    """Whether files in ``directory`` can be written with O_DIRECT (not on every filesystem)."""
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    os.close(fd)
    return True


def _follow(fd: int, progress: Callable[[float], None] | None) -> None:
    """Read qemu-img's ``-p`` output (``(12.50/100%)`` then ``\\r``) until EOF, reporting each step."""
    pending = b""
    while chunk := os.read(fd, 4096):
        pending += chunk
        matches = list(_PROGRESS.finditer(pending))
        if matches:
            if progress:
                progress(float(matches[-1].group(1)))
            pending = pending[matches[-1].end() :]
        pending = pending[-256:]
