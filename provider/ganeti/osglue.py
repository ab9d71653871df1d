"""What the OS definition needs from the store: the volume behind a Ganeti disk, its origin's image
properties, and the snf-image way of installing (copying an image onto a disk that is not a clone)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from provider.errors import InvalidInput, NotFound
from provider.services import Resource, Store
from provider.services.local_disk import local_disk
from provider.utils.sizes import format_size

LOG = logging.getLogger(__name__)


def disk_volume(store: Store, disk_uuid: str | None) -> Resource | None:
    """The Atoll volume Ganeti created for the disk with ``disk_uuid`` (its VOL_UUID), or None."""
    if not disk_uuid:
        return None
    try:
        return store.volumes.find_by_ganeti("VOL_UUID", disk_uuid)
    except NotFound:
        return None


def properties_of(store: Store, res: Resource) -> dict[str, str]:
    """The image properties that apply to ``res``: its own, else its nearest ancestor's."""
    with store.catalog.read() as conn:
        return store.images.inherited_properties(conn, res)


def origin_of(store: Store, vol: Resource) -> Resource:
    """The read-only resource ``vol`` was cloned from (still available, to be copied again)."""
    if vol.parent is None:
        raise InvalidInput(
            "volume %(name)s is not a clone of an image: give img_id to reinstall", name=vol.name
        )
    try:
        return store.volumes.get(vol.parent, "origin")
    except NotFound:
        raise NotFound(what="origin of volume " + vol.name, ref=vol.parent) from None


def source(store: Store, ref: str) -> Resource:
    """An image, snapshot or object to install from (never a volume: its content may change)."""
    res = store.volumes.get(ref, "image")
    if res.mode != "ro":
        raise InvalidInput("img_id %(ref)r is a volume: snapshot it and install the snapshot", ref=ref)
    return res


def is_origin(store: Store, vol: Resource, ref: str) -> bool:
    """Does ``ref`` name the resource ``vol`` was cloned from?"""
    return vol.parent is not None and source(store, ref).id == vol.parent


def device_size(path: str | os.PathLike[str]) -> int:
    with open(path, "rb") as f:
        return f.seek(0, os.SEEK_END)


def copy_image(store: Store, res: Resource, target: str | os.PathLike[str]) -> None:
    """Write the whole of ``res`` (chains flattened) at the start of ``target``, then flush it to disk."""
    size = device_size(target)
    if size < res.size:
        raise InvalidInput(
            "the disk (%(disk)s) is smaller than image %(name)s (%(size)s)",
            disk=format_size(size),
            name=res.name,
            size=format_size(res.size),
        )
    LOG.info("copying %s (%s) onto %s", res.name, format_size(res.size), target)
    backend = store.backend(res.backend)
    with open(target, "r+b") as out:
        backend.export_stream(res.locator, res.disk_format, out)
        out.flush()
        os.fsync(out.fileno())


@contextmanager
def raw_path(store: Store, vol: Resource | None, path: str | None) -> Iterator[Path]:
    """The disk to work on: a raw volume's own file, else Ganeti's DISK_N_PATH, else a local view.

    NOTE: a raw volume is used through its file even when it is attached: a direct-I/O loop device on a
    reflinked XFS file has 4096-byte logical sectors (XFS wants block-aligned direct I/O on shared
    extents, Linux 6.x), so partition tools would read the guest's 512-byte-sector table wrongly.
    Direct-I/O reads of the device see what was written through the file (the kernel writes cached
    pages back first).
    """
    raw_file = store.backend(vol.backend).raw_file(vol.locator, vol.disk_format) if vol else None
    if raw_file is not None:
        yield raw_file
        return
    if path:
        yield Path(path)
        return
    if vol is None:
        raise InvalidInput("the disk has no local path (DISK_0_PATH) and is not an Atoll volume")
    with local_disk(store, vol.id, writable=True) as local:
        yield Path(local)
