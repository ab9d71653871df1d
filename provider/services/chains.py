"""qcow2 chain depth policy: once a volume reads through more than ``store.max_chain_depth`` layers, its
private top absorbs the layers above a shallower base (live ``block-stream``, or offline safe rebase).
Bases and snapshots are never modified; layers that nothing needs any more are collected."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, insert, select

from provider.backends.qcow2 import Qcow2Backend
from provider.catalog import schema as t
from provider.services.base import Service

if TYPE_CHECKING:
    from provider.datapath.service import DataPath

LOG = logging.getLogger(__name__)


def merge_target(depth: int, limit: int) -> int | None:
    """Index in the chain (top = 0) of the layer the top should read from directly, or None when the
    chain is within ``limit``. The chain is cut to about half the limit, so merges stay rare and small."""
    if depth <= limit:
        return None
    keep = max(2, limit // 2)
    return depth + 1 - keep


class Chains(Service):
    def _resource_at(self, conn: Connection, backend: str, locator: str) -> str | None:
        row = conn.execute(
            select(t.resources.c.id).where(
                t.resources.c.backend == backend,
                t.resources.c.locator == locator,
                t.resources.c.state.in_(("available", "deleted")),
            )
        ).first()
        return row[0] if row else None

    def bound(self, vol_id: str, datapath: DataPath) -> bool:
        """Keep volume ``vol_id``'s chain within the limit (the caller holds its lock); True if merged."""
        with self.catalog.read() as conn:
            vol = self.load(conn, vol_id)
        backend = self.store.backend(vol.backend)
        if not isinstance(backend, Qcow2Backend) or vol.disk_format != "qcow2":
            return False
        chain = backend.chain(vol.locator)
        index = merge_target(len(chain), self.store.config.store.max_chain_depth)
        if index is None:
            return False
        base, base_format = chain[index]
        with self.catalog.read() as conn:
            base_id = self._resource_at(conn, vol.backend, base)
        if base_id is None:
            LOG.warning("volume %s: layer %s has no resource; chain left as it is", vol.name, base)
            return False
        LOG.info(
            "volume %s reads through %d layers: merging %d of them into its top",
            vol.name,
            len(chain),
            index - 1,
        )
        if not datapath.live_stream(vol, base):
            backend.rebase(vol.locator, base, base_format)
        with self.write_then_remove() as (conn, files):
            required = [
                r for (r,) in conn.execute(select(t.deps.c.requires_id).where(t.deps.c.resource_id == vol.id))
            ]
            conn.execute(delete(t.deps).where(t.deps.c.resource_id == vol.id))
            conn.execute(insert(t.deps).values(resource_id=vol.id, requires_id=base_id))
            for rid in required:
                files += self.collect(conn, rid)
        return True
