"""A snapshot killed after its backend step froze the volume's top (qcow2): the volume — perhaps a
running guest through qemu-storage-daemon or libvirt — already writes into the new top, so undoing the
snapshot (removing the new top) would lose those writes. fsck completes it instead; the reaper that runs
before every write leaves it alone for fsck."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, select

from provider.backends.base import SnapshotLayout, SnapshotResult
from provider.backends.qcow2 import Qcow2Backend
from provider.catalog import schema as t

if TYPE_CHECKING:
    from provider.services.store import Store

LOG = logging.getLogger(__name__)


def frozen_top_taken(store: Store, conn: Connection, row: Row[Any]) -> SnapshotResult | None:
    """The finished backend step of the pending snapshot ``row``, if it got that far: the new top exists,
    reads through the old one, and the catalog still names the old one as the volume's top."""
    if row.op != "snapshot" or row.parent is None:
        return None
    backend = store.backend(row.backend)
    if backend.snapshot_layout != SnapshotLayout.FREEZE_TOP or not isinstance(backend, Qcow2Backend):
        return None
    new_top = (json.loads(row.op_data or "{}").get("remove_on_abort") or [None])[0]
    vol = conn.execute(select(t.resources.c.locator).where(t.resources.c.id == row.parent)).first()
    if new_top is None or vol is None or vol.locator != row.locator or not backend.exists(new_top):
        return None
    if backend.backing_of(new_top) != row.locator:
        return None
    return SnapshotResult(
        snapshot_locator=row.locator,
        volume_locator=new_top,
        snapshot_format=backend.volume_format,
        layout=SnapshotLayout.FREEZE_TOP,
    )
