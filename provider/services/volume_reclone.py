"""Re-imaging without copying: a volume becomes a fresh thin clone of the resource it was cloned from
again (``atoll volume reimage``; ``gnt-instance reinstall``, where its data path keeps serving it)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select, update

from provider.catalog import schema as t
from provider.errors import CapabilityNotSupported, InvalidInput, NotFound
from provider.services.base import res_key
from provider.utils.faults import failpoint
from provider.utils.host import new_id, now

if TYPE_CHECKING:
    from provider.model import Resource
    from provider.services.volumes import VolumeService

LOG = logging.getLogger(__name__)


def reclone(volumes: VolumeService, vol: Resource, origin: Resource, *, live: bool = True) -> bool:
    """Make ``vol`` a fresh clone of ``origin`` (its parent) again: the backend clones a new top, the
    data path serves it if the volume is attached (``live``; otherwise an attached volume is refused,
    under the volume's lock, which attach takes too), the catalog records it and where it is served in
    one transaction, and the old top is removed after the commit. False, with nothing changed, where
    that cannot be done (another resource still reads the volume's top, or its data path cannot
    switch): the caller copies instead.

    A failure while the data path switches leaves the new top in place (the daemon may hold it): fsck
    reports it as an orphan once nothing serves it."""
    with volumes.lock(vol.id):
        with volumes.catalog.read() as conn:
            vol = volumes.load(conn, vol.id)
            needed = conn.execute(select(t.deps.c.resource_id).where(t.deps.c.requires_id == vol.id)).first()
        if not live:
            volumes.datapath.refuse_if_attached(vol, "reimage it")
        if vol.parent != origin.id or origin.backend != vol.backend or needed is not None:
            return False
        backend = volumes.store.backend(vol.backend)
        locator = backend.new_locator(new_id(), "rw")
        result = backend.clone(origin.locator, origin.disk_format, locator, vol.size)
        switched, served = volumes.datapath.switch_to_clone(vol, locator, origin.locator)
        if not switched:
            backend.remove(locator)
            return False
        failpoint("reclone.after-backend")
        with volumes.write_then_remove(res_key(vol.id)) as (conn, files):
            if served is not None:
                volumes.datapath.rewrite(conn, served)
            conn.execute(
                update(t.resources)
                .where(t.resources.c.id == vol.id)
                .values(locator=locator, disk_format=backend.volume_format, updated_at=now())
            )
            conn.execute(delete(t.deps).where(t.deps.c.resource_id == vol.id))
            if result.depends_on_source:
                conn.execute(insert(t.deps).values(resource_id=vol.id, requires_id=origin.id))
            files.append((vol.backend, vol.locator))
    return True


def reimage(volumes: VolumeService, ref: str) -> Resource:
    """``atoll volume reimage``: ``ref`` (not attached) holds its origin's data again, uncustomized."""
    vol = volumes.get(ref, "volume")
    if vol.parent is None:
        raise InvalidInput(
            "volume %(name)s was created empty: there is no image to reimage it from", name=vol.name
        )
    try:
        origin = volumes.get(vol.parent)
    except NotFound:
        raise NotFound(what=f"image volume {vol.name} was cloned from", ref=vol.parent) from None
    if not reclone(volumes, vol, origin, live=False):
        raise CapabilityNotSupported(
            backend=vol.backend, operation="reimage a volume whose snapshots still read its data"
        )
    LOG.info("volume %s is a fresh clone of %s again", vol.name, origin.name)
    return volumes.get(vol.id)
