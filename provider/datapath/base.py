"""The Attacher interface (one per backend), and the attacher for raw files: a direct-I/O loop device."""

from __future__ import annotations

import abc
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from atoll_common import process
from provider.backends.base import Backend, SnapshotResult
from provider.datapath import health, loop
from provider.errors import CapabilityNotSupported, DataPathError
from provider.model import Access, Attachment, Mode, Resource
from provider.utils.host import HOST

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    mode: Mode
    access: Access

    @property
    def readonly(self) -> bool:
        return self.mode == "ro"


class Attacher(abc.ABC):
    """Brings one backend's resources to hypervisors, and runs live operations through that path."""

    def __init__(self, backend: Backend, run_dir: Path, run: process.Runner = process.run) -> None:
        self.backend = backend
        self.run_dir = run_dir
        self.run = run

    @abc.abstractmethod
    def attach(self, res: Resource, req: Request) -> Attachment:
        """Bring the data path of ``res`` up and return it.

        Idempotent and self-healing: what a crashed attach left behind is adopted or removed, and a
        daemon that died is restarted.

        :raises DataPathError: when a piece cannot be set up (what was set up is undone).
        """

    @abc.abstractmethod
    def healthy(self, att: Attachment) -> bool:
        """Whether every piece of ``att`` still works (no daemon died, no device vanished)."""

    @abc.abstractmethod
    def detach(self, res: Resource, att: Attachment | None) -> None:
        """Undo what attach made: ``att`` as recorded, or (None) whatever a crashed attach left.

        :raises InUse: before anything is changed, when a user (a mount, a process, an NBD client)
            still holds the device.
        """

    def open(self, res: Resource, exclusive: bool) -> None:
        """Make ``res`` ready for I/O on this host, alone or with a migration peer (Ganeti ``open``);
        single-host backends have nothing to do."""
        return

    def close(self, res: Resource) -> None:
        """This host stops I/O on ``res``; what attach made stays (Ganeti ``close``)."""
        return

    def server_pid(self, att: Attachment) -> int | None:
        """The daemon serving ``att`` on this host, if it has one (recorded to tell a dead one later)."""
        return None

    def break_lock(self, res: Resource, node: str) -> None:
        """Drop what the dead host ``node`` holds on ``res`` in shared storage (only rbd has any)."""
        return

    def grow(self, res: Resource, att: Attachment, size: int) -> None:
        """Grow ``res`` to ``size`` while attached; the device must show the new size."""
        raise CapabilityNotSupported(backend=self.backend.name, operation="grow an attached volume")

    def snapshot(self, res: Resource, att: Attachment, new_locator: str) -> SnapshotResult | None:
        """Take a snapshot through the running data path; None: the backend's own snapshot is safe."""
        flush(att)
        return None

    def push_overlay(self, res: Resource, att: Attachment, top_locator: str, new_locator: str) -> None:
        """Freeze the served top layer under a new empty overlay, live (layered backends only)."""
        raise CapabilityNotSupported(backend=self.backend.name, operation="add layers to an attached volume")

    def reclone(
        self, res: Resource, att: Attachment, new_locator: str, base_locator: str
    ) -> Attachment | None:
        """Serve ``new_locator``, a fresh clone of ``base_locator``, instead of the volume's data; return
        the attachment that serves it now (``att`` itself where the device, URI and files stay), None
        when the running data path cannot switch (the caller then copies onto the volume)."""
        return None

    def stream(self, res: Resource, att: Attachment, layer: str, base_locator: str) -> bool:
        """Merge into the private ``layer`` the layers between it and ``base_locator``, live; False when
        the running data path cannot (the chain is then left as it is until the volume is detached)."""
        return False


def flush(att: Attachment) -> None:
    """Push what the host still caches for the device down to the backend (as a guest flush would)."""
    if att.device is None or att.readonly:
        return
    try:
        fd = os.open(att.device, os.O_RDONLY)
    except OSError as e:
        raise DataPathError(reason=f"cannot open {att.device}: {e.strerror}") from e
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileAttacher(Attacher):
    """Raw files (reflink volumes, any raw read-only resource): a loop device with direct I/O and no
    daemon in the path (kernelspace), or the file itself (userspace)."""

    def attach(self, res: Resource, req: Request) -> Attachment:
        path = self.backend.path(res.locator)
        if req.access == "userspace":
            return Attachment(res.id, req.mode, req.access, "file", None, str(path), HOST, path=str(path))
        dev = self._adopt(path, req) or loop.attach(self.run, path, readonly=req.readonly)
        return Attachment(res.id, req.mode, req.access, "block", dev, None, HOST, path=str(path))

    def _adopt(self, path: Path, req: Request) -> str | None:
        """A loop device a crashed attach made for ``path`` (same access, unused) is taken over."""
        for dev in loop.find(path):
            if loop.is_readonly(dev) == req.readonly and not loop.partscan(dev) and not loop.in_use(dev):
                LOG.info("taking over %s left on %s", dev, path.name)
                return dev
        return None

    def healthy(self, att: Attachment) -> bool:
        return health.file_ok(att.device, att.path)

    def detach(self, res: Resource, att: Attachment | None) -> None:
        if att is not None:
            if att.device:
                loop.check_free(att.device, res.kind, res.name)
                loop.detach(self.run, att.device)
            return
        for dev in loop.find(self.backend.path(res.locator)):
            reason = loop.in_use(dev) if not loop.partscan(dev) else "it scans partitions"
            if reason:
                LOG.info("leaving %s alone: not attached by Atoll and %s", dev, reason)
                continue
            loop.detach(self.run, dev)

    def grow(self, res: Resource, att: Attachment, size: int) -> None:
        self.backend.grow(res.locator, size)
        if att.device:
            loop.refresh(self.run, att.device)
