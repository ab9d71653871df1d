"""What the OS definition needs from the store: the volume behind a Ganeti disk, its origin's image
properties, and the snf-image way of installing (copying an image onto a disk that is not a clone)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from provider.backends.base import Capability
from provider.backends.reflink import ReflinkBackend
from provider.errors import InvalidInput, NotFound
from provider.services import Resource, Store, volume_reclone
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


def reclone(store: Store, vol: Resource, origin: Resource) -> bool:
    """Reinstall without copying: ``vol`` becomes a fresh thin clone of ``origin`` again — reflink: the
    same file, cloned over in place; qcow2: a new top over the origin that the attached daemon serves
    at once; rbd: a new clone of the origin's snapshot, attached in place of the old image. False where
    the backend or the data path cannot (the caller copies onto the volume)."""
    backend = store.backend(vol.backend)
    if isinstance(backend, ReflinkBackend):
        if origin.backend != vol.backend or origin.disk_format != "raw":
            return False
        backend.reclone(vol.locator, origin.locator, vol.size)
    else:
        thin = Capability.CLONE | Capability.THIN
        if backend.capabilities & thin != thin or not volume_reclone.reclone(store.volumes, vol, origin):
            return False
    LOG.info("volume %s is a fresh clone of %s again (%s)", vol.name, origin.name, format_size(vol.size))
    return True


def served_path(store: Store, vol: Resource, handed: str | None) -> str | None:
    """Where the disk Ganeti handed over (``handed``, already checked) is served after a re-clone: the
    volume's device now (an rbd image is mapped again, maybe at another number), else ``handed``."""
    att = store.datapath.attachment(vol.id)
    if handed and att is not None and att.device:
        return att.device
    return handed


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


def check_handed(store: Store, vol: Resource, path: str) -> None:
    """Customize only the disk Ganeti hands over: ``path`` (DISK_N_PATH) must be volume ``vol``'s data —
    the device or file it is attached at on this host, or its own raw file. A volume found by a stale or
    reused VOL_UUID is never written instead.

    :raises InvalidInput: ``path`` is some other disk.
    """
    real = os.path.realpath(path)
    att = store.datapath.attachment(vol.id)
    known = [x for x in (att.device, att.uri, att.path) if x] if att is not None else []
    raw_file = store.backend(vol.backend).raw_file(vol.locator, vol.disk_format)
    if raw_file is not None:
        known.append(str(raw_file))
    if any(os.path.realpath(k) == real for k in known) or _loop_backed_by(real, known):
        return
    raise InvalidInput(
        "DISK_0_PATH %(path)s is not volume %(name)s (%(where)s): refusing to customize a disk Ganeti "
        "did not hand over",
        path=path,
        name=vol.name,
        where=f"attached at {att.device or att.uri}" if att is not None else "not attached on this host",
    )


def _loop_backed_by(device: str, files: list[str]) -> bool:
    from provider.datapath import loop

    if not os.path.basename(device).startswith("loop"):
        return False
    backing = loop.backing_file(os.path.basename(device))
    return backing is not None and any(os.path.realpath(f) == os.path.realpath(backing) for f in files)


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
