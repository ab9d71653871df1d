"""A snapshot killed after its backend step froze the volume's top (qcow2): the volume — perhaps a
running guest through qemu-storage-daemon or libvirt — already writes into the new top, so undoing the
snapshot (removing the new top) would lose those writes. fsck completes it instead; the reaper that runs
before every write leaves it alone for fsck."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select

from provider.backends.base import SnapshotLayout, SnapshotResult
from provider.backends.qcow2 import Qcow2Backend
from provider.catalog import schema as t
from provider.model import Resource

if TYPE_CHECKING:
    from provider.services.store import Store

LOG = logging.getLogger(__name__)


def frozen_top_taken(store: Store, conn: Connection, res: Resource) -> SnapshotResult | None:
    """The finished backend step of the pending snapshot ``res`` (as loaded by the caller), if it got
    that far: the new top exists, reads through the old one, and the catalog still names the old one as
    the volume's top."""
    if res.op != "snapshot" or res.parent is None:
        return None
    backend = store.backend(res.backend)
    if backend.snapshot_layout != SnapshotLayout.FREEZE_TOP or not isinstance(backend, Qcow2Backend):
        return None
    new_top = (res.op_data.get("remove_on_abort") or [None])[0]
    vol = conn.execute(select(t.resources.c.locator).where(t.resources.c.id == res.parent)).first()
    if new_top is None or vol is None or vol.locator != res.locator or not backend.exists(new_top):
        return None
    if backend.backing_of(new_top) != res.locator:
        return None
    return SnapshotResult(
        snapshot_locator=res.locator,
        volume_locator=new_top,
        snapshot_format=backend.volume_format,
        layout=SnapshotLayout.FREEZE_TOP,
    )
