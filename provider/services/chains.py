"""qcow2 chain depth policy: once a volume reads through more than ``store.max_chain_depth`` layers, the
layers above a shallower base are merged into a layer private to the volume, and the layers nothing needs
any more are collected. Bases and snapshots are never modified.

Offline, the volume's top absorbs them (``qemu-img rebase``, safe mode). Attached, the top belongs to the
running daemon (and a writable FUSE export holds the resize permission a block job on it would need), so
the top is first frozen under a new empty overlay and the frozen layer, private to the volume (a hidden
resource), absorbs them with ``block-stream``: one layer more than offline.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, delete, insert, select, update

from atoll_common.rollback import rollback
from provider.backends import Backend, Capability
from provider.catalog import schema as t
from provider.model import Resource
from provider.services.base import Service, res_key
from provider.services.datapath import DataPath
from provider.utils.faults import failpoint
from provider.utils.host import new_id, now

LOG = logging.getLogger(__name__)


def merge_target(depth: int, limit: int, added: int = 0) -> int | None:
    """Index in the chain (top = 0) of the layer to read from directly once the layers above it are
    merged, or None when the chain is within ``limit``. ``added``: layers the merge itself adds. The
    chain is cut to about half the limit, so merges stay rare and small."""
    if depth <= limit:
        return None
    keep = max(2 + added, limit // 2)
    index = depth + 1 + added - keep
    return index if index >= 2 else None


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

    def _requires(self, conn: Connection, rid: str) -> list[str]:
        return [r for (r,) in conn.execute(select(t.deps.c.requires_id).where(t.deps.c.resource_id == rid))]

    def _rewire(self, conn: Connection, rid: str, requires: str) -> list[tuple[str, str]]:
        """``rid`` now requires only ``requires``; collect what it required before."""
        old = self._requires(conn, rid)
        conn.execute(delete(t.deps).where(t.deps.c.resource_id == rid))
        conn.execute(insert(t.deps).values(resource_id=rid, requires_id=requires))
        files: list[tuple[str, str]] = []
        for req in old:
            if req != requires:
                files += self.collect(conn, req)
        return files

    def bound(self, vol_id: str, datapath: DataPath) -> bool:
        """Keep volume ``vol_id``'s chain within the limit (the caller holds its lock); True if merged."""
        with self.catalog.read() as conn:
            vol = self.load(conn, vol_id)
        backend = self.store.backend(vol.backend)
        if not backend.capabilities & Capability.LAYERED or vol.disk_format != backend.volume_format:
            return False
        att = datapath.attachment(vol.id)
        if att is not None and (att.readonly or att.direct):
            # The daemon reads the top, or QEMU opens the chain itself (no stream into a layer under
            # its top through libvirt): merged when next bound while detached, or rw through a daemon.
            return False
        chain = backend.chain(vol.locator)
        index = merge_target(len(chain), self.store.config.store.max_chain_depth, 0 if att is None else 1)
        if index is None:
            return False
        base, base_format = chain[index]
        with self.catalog.read() as conn:
            base_id = self._resource_at(conn, vol.backend, base)
        if base_id is None:
            LOG.warning("volume %s: layer %s has no resource; chain left as it is", vol.name, base)
            return False
        LOG.info("volume %s reads through %d layers: merging %d of them", vol.name, len(chain), index - 1)
        if att is None:
            backend.rebase(vol.locator, base, base_format)
            failpoint("chain.after-rebase")
            with self.write_then_remove() as (conn, files):
                files += self._rewire(conn, vol.id, base_id)
            return True
        return self._merge_live(vol, backend, datapath, base, base_id)

    def _merge_live(
        self, vol: Resource, backend: Backend, datapath: DataPath, base: str, base_id: str
    ) -> bool:
        # The catalog learns of the new top before the daemon does: after a crash in between, the old
        # top (still written) is the new top's backing file, so nothing written is lost.
        frozen_id, old_top, new_top = new_id(), vol.locator, backend.new_locator(new_id(), "rw")
        backend.create_overlay(new_top, old_top, vol.size)
        with self.catalog.write(res_key(vol.id), res_key(frozen_id)) as conn:
            self._freeze_private(conn, vol, frozen_id, new_top)
        with rollback() as undo:
            undo.push(backend.remove, new_top)
            undo.push(self._unfreeze, vol, frozen_id, old_top)
            datapath.live_push_overlay(vol, old_top, new_top)
        if not datapath.live_stream(vol, old_top, base):
            return False
        with self.write_then_remove() as (conn, files):
            files += self._rewire(conn, frozen_id, base_id)
        return True

    def _freeze_private(self, conn: Connection, vol: Resource, frozen_id: str, new_top: str) -> None:
        """The volume's top becomes a hidden resource only the volume requires; ``new_top`` its top."""
        stamp = now()
        conn.execute(
            t.resources.insert().values(
                id=frozen_id, size=vol.size, mode="ro", backend=vol.backend, locator=vol.locator,
                disk_format="qcow2", parent=vol.id, state="deleted", owner=vol.owner,
                created_at=stamp, updated_at=stamp,
            )
        )  # fmt: skip
        conn.execute(update(t.deps).where(t.deps.c.resource_id == vol.id).values(resource_id=frozen_id))
        conn.execute(insert(t.deps).values(resource_id=vol.id, requires_id=frozen_id))
        conn.execute(
            update(t.resources).where(t.resources.c.id == vol.id).values(locator=new_top, updated_at=stamp)
        )

    def _unfreeze(self, vol: Resource, frozen_id: str, old_top: str) -> None:
        with self.catalog.write(res_key(vol.id), res_key(frozen_id)) as conn:
            self._unfreeze_private(conn, vol, frozen_id, old_top)

    def _unfreeze_private(self, conn: Connection, vol: Resource, frozen_id: str, old_top: str) -> None:
        conn.execute(delete(t.deps).where(t.deps.c.resource_id == vol.id))
        conn.execute(update(t.deps).where(t.deps.c.resource_id == frozen_id).values(resource_id=vol.id))
        conn.execute(delete(t.resources).where(t.resources.c.id == frozen_id))
        conn.execute(
            update(t.resources).where(t.resources.c.id == vol.id).values(locator=old_top, updated_at=now())
        )
