"""AddSwap: format the SWAP partition FixPartitionTable made and add it to /etc/fstab."""

from __future__ import annotations

import os
import uuid

from customization.errors import UnsupportedImage
from customization.tasks.base import TaskContext, TaskMeta, TaskResult

META = TaskMeta(
    name="AddSwap",
    summary="Format the swap partition asked for by SWAP and add it to /etc/fstab",
    runs_after=("FixPartitionTable", "FilesystemResize"),
    activate_by=("SWAP",),
)
PAGE = 4096


def swap_header(size: int, ident: uuid.UUID) -> bytes:
    """A Linux swap v1 header for a ``size``-byte area (the first page of the area)."""
    last_page = size // PAGE - 1
    head = bytearray(PAGE)
    head[1024:1036] = (1).to_bytes(4, "little") + last_page.to_bytes(4, "little") + (0).to_bytes(4, "little")
    head[1036:1052] = ident.bytes
    head[PAGE - 10 :] = b"SWAPSPACE2"
    return bytes(head)


def run(ctx: TaskContext) -> TaskResult:
    spec = ctx.props.swap
    assert spec is not None
    if spec.partition is None:
        raise UnsupportedImage(
            f"SWAP={spec.disk_letter} needs a second disk; only the root disk is customized"
        )
    part = ctx.table.get(spec.partition)
    ident = uuid.uuid4()
    fd = os.open(ctx.disk.path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.pwrite(fd, swap_header(part.bytes, ident), part.offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    fstab = ctx.guest.read_text("/etc/fstab") if ctx.guest.exists("/etc/fstab") else ""
    lines = [ln for ln in fstab.splitlines() if not (ln.split()[2:3] == ["swap"] and ln.startswith("UUID="))]
    lines.append(f"UUID={ident}\tnone\tswap\tsw\t0\t0")
    ctx.guest.write("/etc/fstab", ("\n".join(lines) + "\n").encode(), mode=None if fstab else 0o644)
    return TaskResult(f"partition {part.number} formatted as swap ({part.bytes >> 20} MiB), added to fstab")
