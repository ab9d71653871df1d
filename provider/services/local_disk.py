"""``local_disk``: a raw view (block device or raw file) of a resource for tools that work on disks."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from provider.datapath.nbdfile import nbd_file
from provider.errors import DataPathError, InUse, PermissionDenied

if TYPE_CHECKING:
    from provider.services.store import Store

LOG = logging.getLogger(__name__)


@contextmanager
def local_disk(store: Store, ref: str, writable: bool = True) -> Iterator[str]:
    """Yield a path whose bytes are ``ref``'s raw disk: the device it is attached at, its raw file
    (nothing to set up), or a device attached for the duration of the block and detached after it.
    Only what this call attached is detached.

    :raises PermissionDenied: ``writable`` on a read-only resource.
    A userspace attachment (an NBD export of qcow2, an ``rbd:`` URI) is reached through ``nbdfuse`` for the
    duration of the block.

    :raises InUse: it is attached in a way that gives no raw view, or read-only.
    """
    datapath = store.datapath
    res = store.volumes.get(ref)
    if writable and res.mode == "ro":
        raise PermissionDenied(reason=f"{res.kind} {res.name!r} is read-only")
    att = datapath.attachment(res.id)
    backend = store.backend(res.backend)
    raw_file = backend.raw_file(res.locator, res.disk_format)
    if att is not None:
        if writable and att.readonly:
            raise InUse(what=res.kind, ref=res.name, reason="it is attached read-only")
        if att.device is not None and raw_file is not None:
            # NOTE: the file, not its loop device: a direct-I/O loop device inherits the backing
            # filesystem's sector size (4096 on some), and partition tools would misread the guest's table.
            yield str(raw_file)
            _sync_under(store, raw_file, att.device)
            return
        if att.device is not None:
            yield att.device
            return
        if att.kind in ("nbd", "rbd") and att.uri is not None:  # Ganeti's OS create, access=userspace
            with nbd_file(att.uri, store.run, readonly=not writable) as path:
                yield str(path)
            return
        if att.kind != "file" or att.uri is None:
            raise InUse(what=res.kind, ref=res.name, reason=f"it is attached in userspace at {att.uri}")
        yield att.uri
        return
    if raw_file is not None:
        yield str(raw_file)
        return
    att = datapath.attach(res.id, readonly=not writable)
    try:
        if att.device is None:
            raise DataPathError(reason=f"attaching {res.name} gave no device")
        yield att.device
    finally:
        datapath.detach(res.id)


def _sync_under(store: Store, path: Path, device: str) -> None:
    """Make writes through ``path`` visible through the loop ``device`` bound to it: flush the file's page
    cache to disk (the direct-I/O loop reads the disk) and drop the device's own buffers."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    store.run(["blockdev", "--flushbufs", device])
