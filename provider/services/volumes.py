"""Volumes (Cinder-like): empty or thin clones of any read-only resource; snapshot, grow, delete."""

from __future__ import annotations

import builtins
import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select, update

from atoll_common.rollback import rollback
from customization.params import InstanceParams
from customization.report import Report
from provider.backends.base import Capability, SnapshotLayout, SnapshotResult
from provider.catalog import schema as t
from provider.errors import AlreadyExists, AtollError, Conflict, InvalidInput, NotFound, StorageFull
from provider.model import Resource
from provider.services import volume_reclone
from provider.services.base import Service, name_key, res_key
from provider.services.chains import Chains
from provider.services.customize import Progress
from provider.services.datapath import DataPath
from provider.services.objects import SNAPSHOTS_CONTAINER
from provider.utils.faults import failpoint
from provider.utils.host import new_id, now
from provider.utils.names import check_name
from provider.utils.props import EXCLUDE_ALL_TASKS
from provider.utils.sizes import format_size

if TYPE_CHECKING:
    from provider.model import Attachment

LOG = logging.getLogger(__name__)
SNAPSHOT_OF = "ATOLL_SNAPSHOT_OF"
# Snapshots up to this (logical) size get their sha256 right after they are taken; reading a larger one
# would make the snapshot command slow, so the next scrub computes it.
INLINE_DIGEST_MAX = 4 << 30


class VolumeService(Service):
    @property
    def datapath(self) -> DataPath:
        return self.store.datapath

    def attach(self, ref: str, userspace: bool = False, readonly: bool | None = None) -> Attachment:
        """Attach a volume, or read-only a snapshot, image or object, on this host (idempotent)."""
        return self.datapath.attach(ref, userspace=userspace, readonly=readonly)

    def detach(self, ref: str) -> None:
        """Undo what attach made on this host (idempotent)."""
        self.datapath.detach(ref)

    def check_name_free(self, conn: Connection, name: str, owner: str | None = None) -> None:
        """Volume names are per project (the caller's unless ``owner`` says which)."""
        taken = (
            select(t.volume_views.c.resource_id)
            .join(t.resources, t.resources.c.id == t.volume_views.c.resource_id)
            .where(t.volume_views.c.name == name, t.resources.c.owner == (owner or self.caller.name))
        )
        if conn.execute(taken).first():
            raise AlreadyExists(what="volume", name=name)

    def _volume(self, conn: Connection, ref: str) -> Resource:
        res = self.resolve(conn, ref, "volume")
        if res.volume is None:
            raise InvalidInput("%(ref)r is a %(kind)s, not a volume", ref=ref, kind=res.kind)
        self.check_owner(res)
        return res

    def create(
        self,
        name: str,
        size: int | None = None,
        source: str | None = None,
        ganeti: dict[str, Any] | None = None,
    ) -> Resource:
        """Create an empty volume, or a thin clone of the read-only resource ``source`` (no data copied)."""
        check_name(name, "volume name")
        backend = self.store.backend()
        rid = new_id()
        locator = backend.new_locator(rid, "rw")
        keys = [res_key(rid), name_key("volume", name)]
        if source is not None:  # lock the source by id, then check it again inside the transaction
            keys.append(res_key(self.get(source, "source").id))
        with self.write_then_remove(*keys) as (conn, _):
            self.check_name_free(conn, name)
            src = None
            if source is not None:
                src = self.resolve(conn, source, "source")
                if res_key(src.id) not in keys:  # the name moved to another resource meanwhile
                    raise Conflict(reason=f"{source!r} changed while the clone started: try again")
                self.check_read(conn, src)
                if src.mode != "ro":
                    raise Conflict(
                        reason=f"{src.name!r} is a volume: clone a snapshot of it (atoll volume snapshot)"
                    )
                if size is None:
                    size = src.size
                if size < src.size:
                    raise InvalidInput(
                        "volume size %(size)s is smaller than its source %(src)s (%(srcsize)s)",
                        size=format_size(size),
                        src=src.name,
                        srcsize=format_size(src.size),
                    )
                if src.backend != backend.name:
                    backend = self.store.backend(src.backend)
                    locator = backend.new_locator(rid, "rw")
                backend.require(Capability.CLONE, "clone read-only resources")
            elif size is None:
                raise InvalidInput("an empty volume needs a size (--size)")
            self.insert_pending(
                conn,
                rid=rid,
                size=size,
                mode="rw",
                backend=backend.name,
                locator=locator,
                disk_format=backend.volume_format,
                parent=src.id if src else None,
                op="clone" if src else "create",
                remove_on_abort=[locator],
            )
            if src is not None:  # hold the source until we know whether the clone needs it
                conn.execute(insert(t.deps).values(resource_id=rid, requires_id=src.id))
            conn.execute(
                t.volume_views.insert().values(
                    resource_id=rid,
                    name=name,
                    status="available",
                    ganeti=json.dumps(ganeti or {}),
                    created_at=now(),
                )
            )
            self._index_ganeti(conn, rid, ganeti or {})
        with rollback() as undo:
            undo.push(self.abort_pending, rid)
            if src is None:
                backend.create_empty(locator, size)
            else:
                result = backend.clone(src.locator, src.disk_format, locator, size)
            failpoint("clone.after-backend")
            with self.catalog.write(*keys) as conn:
                if src is not None and not result.depends_on_source:
                    conn.execute(delete(t.deps).where(t.deps.c.resource_id == rid))
                self.mark_available(conn, rid)
        return self.get(rid)

    def create_customized(
        self,
        name: str,
        source: str,
        params: InstanceParams,
        *,
        size: int | None = None,
        ganeti: dict[str, Any] | None = None,
        always: bool = False,
        on_progress: Progress | None = None,
    ) -> tuple[Resource, Report | None]:
        """Clone ``source`` as volume ``name`` and customize it; if customizing fails, the volume is
        removed and the error raised. An Image's clone is always customized, any other source's only
        when ``always`` (the caller gave instance parameters); a Snapshot's clone then runs no task.
        Unless ``always``, a data disk (no Linux system, no OSFAMILY: an ISO, a blank disk) is left as is.

        :returns: the volume and the engine's report (None when nothing was customized).
        """
        vol = self.create(name, size=size, source=source, ganeti=ganeti)
        src = self.get(vol.parent) if vol.parent else None
        if src is None or not (always or src.kind == "image"):
            return vol, None
        with rollback() as undo:
            undo.push(self._remove_failed, vol.id)
            with self.store.customize.first_run(vol.id):
                report = self.store.customize.run(vol.id, params, on_progress, data_disks=not always)
        return self.get(vol.id), report

    def _remove_failed(self, rid: str) -> None:
        """Remove a volume whose first customization failed; if that failure filled the store, give
        back the space its half-written data holds first (the catalog needs some to record the delete)."""
        try:
            self.delete(rid)
        except StorageFull:
            vol = self.get(rid, "volume")
            self.store.backend(vol.backend).give_back_space(vol.locator)
            self.delete(rid)

    def snapshot(self, ref: str, name: str) -> Resource:
        """Freeze the volume's content as a read-only Snapshot (an image with EXCLUDE_ALL_TASKS)."""
        check_name(name, "snapshot name")
        vol = self.get(ref, "volume")
        keys = (res_key(vol.id), name_key("image", name), name_key("object", f"{SNAPSHOTS_CONTAINER}/{name}"))
        with self.lock(vol.id):
            with self.write_then_remove(*keys) as (conn, _):
                vol = self._volume(conn, ref)
                backend = self.store.backend(vol.backend)
                backend.require(Capability.SNAPSHOT, "snapshot volumes")
                self.store.images.check_name_free(conn, name, self.caller.name)
                self.store.objects.reserve_name(conn, SNAPSHOTS_CONTAINER, name)
                sid = new_id()
                frozen = backend.snapshot_layout == SnapshotLayout.FREEZE_TOP
                new_locator = (
                    backend.new_locator(new_id(), "rw")
                    if frozen
                    else backend.snapshot_locator(vol.locator, sid)
                )
                self.insert_pending(
                    conn,
                    rid=sid,
                    size=vol.size,
                    mode="ro",
                    backend=vol.backend,
                    locator=vol.locator if frozen else new_locator,
                    disk_format=vol.disk_format,
                    parent=vol.id,
                    op="snapshot",
                    remove_on_abort=[new_locator],
                )
                props = self.store.images.inherited_properties(conn, vol)
                props.update({EXCLUDE_ALL_TASKS: "yes", SNAPSHOT_OF: vol.id})
                self._insert_snapshot_views(conn, sid, name, props)
            failpoint("snapshot.after-pending")
            with rollback() as undo:
                undo.push(self.abort_pending, sid)
                result = self.datapath.live_snapshot(vol, new_locator) or backend.snapshot(
                    vol.locator, new_locator
                )
                failpoint("snapshot.after-backend")
                with self.catalog.write(res_key(vol.id), res_key(sid)) as conn:
                    self._link_snapshot(conn, vol, sid, result, backend.volume_format)
                    self.mark_available(
                        conn, sid, locator=result.snapshot_locator, disk_format=result.snapshot_format
                    )
            Chains(self.store).bound(vol.id, self.datapath)
        self._record_digest(sid, vol.size)
        return self.get(sid)

    def _record_digest(self, sid: str, size: int) -> None:
        """The new snapshot's sha256, read after the volume's lock is released (the snapshot is read-only,
        the volume goes on). Larger snapshots, or a failure here, leave it to ``atoll fsck --scrub``."""
        if size > INLINE_DIGEST_MAX:
            return
        try:
            self.store.scrub.record_digest(sid)
        except AtollError as e:
            LOG.warning("snapshot %s: sha256 not recorded (atoll fsck --scrub will): %s", sid, e)

    def _insert_snapshot_views(self, conn: Connection, sid: str, name: str, props: dict[str, str]) -> None:
        stamp = now()
        conn.execute(
            t.object_views.insert().values(
                resource_id=sid,
                container=SNAPSHOTS_CONTAINER,
                name=name,
                content_type="application/octet-stream",
                meta="{}",
                created_at=stamp,
            )
        )
        conn.execute(
            t.image_views.insert().values(
                resource_id=sid,
                name=name,
                owner=self.caller.name,
                visibility="private",
                status="active",
                disk_format="raw",
                container_format="bare",
                properties=json.dumps(props, sort_keys=True),
                created_at=stamp,
                updated_at=stamp,
            )
        )

    def finish_snapshot(self, conn: Connection, sid: str, result: SnapshotResult) -> None:
        """Complete the pending snapshot ``sid`` whose backend step is done (fsck, see
        snapshot_recovery): link it as the killed process would have."""
        snap = self.load(conn, sid, states=("pending",))
        assert snap.parent is not None
        self.catalog.lock_keys(conn, res_key(snap.parent))  # the volume is further up the graph
        vol = self.load(conn, snap.parent)
        backend = self.store.backend(vol.backend)
        self._link_snapshot(conn, vol, sid, result, backend.volume_format)
        self.mark_available(conn, sid, locator=result.snapshot_locator, disk_format=result.snapshot_format)
        LOG.warning(
            "snapshot %s of volume %s completed: the volume already writes to its new top", sid, vol.name
        )

    def _link_snapshot(
        self, conn: Connection, vol: Resource, sid: str, result: SnapshotResult, volume_format: str
    ) -> None:
        if result.layout == SnapshotLayout.FREEZE_TOP:
            # The volume's old top is now the snapshot: it inherits what the volume required, and the
            # volume's new top requires the snapshot.
            conn.execute(update(t.deps).where(t.deps.c.resource_id == vol.id).values(resource_id=sid))
            conn.execute(insert(t.deps).values(resource_id=vol.id, requires_id=sid))
            conn.execute(
                update(t.resources)
                .where(t.resources.c.id == vol.id)
                .values(locator=result.volume_locator, disk_format=volume_format, updated_at=now())
            )
        elif result.layout == SnapshotLayout.INTERNAL:
            conn.execute(insert(t.deps).values(resource_id=sid, requires_id=vol.id))

    def grow(self, ref: str, size: int) -> Resource:
        vol = self.get(ref, "volume")
        with self.lock(vol.id):
            with self.catalog.read() as conn:
                vol = self._volume(conn, ref)
            if size == vol.size:
                return vol
            if size < vol.size:
                raise InvalidInput(
                    "cannot shrink volume %(name)s from %(old)s to %(new)s",
                    name=vol.name,
                    old=format_size(vol.size),
                    new=format_size(size),
                )
            backend = self.store.backend(vol.backend)
            backend.require(Capability.GROW, "grow volumes")
            if not self.datapath.live_grow(vol, size):
                backend.grow(vol.locator, size)
            failpoint("grow.after-backend")
            with self.catalog.write(res_key(vol.id)) as conn:
                conn.execute(
                    update(t.resources).where(t.resources.c.id == vol.id).values(size=size, updated_at=now())
                )
        return self.get(vol.id)

    def reimage(self, ref: str) -> Resource:
        """Make the volume a fresh clone of its origin again (no data copied); refused while attached."""
        return volume_reclone.reimage(self, ref)

    def delete(self, ref: str) -> None:
        """Delete a volume; snapshots taken from it stay (their data is kept while they need it)."""
        vol = self.get(ref, "volume")
        with self.lock(vol.id):
            self.datapath.refuse_if_attached(vol, "delete it")
            with self.write_then_remove(res_key(vol.id)) as (conn, files):
                vol = self._volume(conn, ref)
                files += self.hide(conn, vol.id)

    def list(self) -> builtins.list[Resource]:
        return self.list_view(t.volume_views, t.volume_views.c.name)

    def show(self, ref: str) -> Resource:
        with self.catalog.read() as conn:
            return self._volume(conn, ref)

    def set_ganeti(self, ref: str, values: dict[str, Any]) -> Resource:
        with self.write_one(ref, "volume") as conn:
            vol = self._volume(conn, ref)
            merged = {**vol.volume.ganeti, **values} if vol.volume else values
            conn.execute(
                update(t.volume_views)
                .where(t.volume_views.c.resource_id == vol.id)
                .values(ganeti=json.dumps(merged))
            )
            self._index_ganeti(conn, vol.id, merged)
            return self.load(conn, vol.id)

    def _index_ganeti(self, conn: Connection, rid: str, ganeti: dict[str, Any]) -> None:
        conn.execute(delete(t.ganeti_ids).where(t.ganeti_ids.c.resource_id == rid))
        rows = t.ganeti_rows(rid, ganeti)
        if rows:
            conn.execute(t.ganeti_ids.insert(), rows)

    def find_by_ganeti(self, key: str, value: str) -> Resource:
        """Find the volume whose Ganeti identity ``key`` (e.g. ``VOL_NAME``) is ``value`` (indexed)."""
        ids = t.ganeti_ids.c
        with self.catalog.read() as conn:
            rid = conn.execute(
                select(ids.resource_id)
                .join(t.volume_views, t.volume_views.c.resource_id == ids.resource_id)
                .join(t.resources, t.resources.c.id == ids.resource_id)
                .where(ids.key == key, ids.value == value, t.resources.c.state == "available")
                .order_by(t.volume_views.c.created_at)
                .limit(1)
            ).scalar()
            if rid is not None:
                return self.load(conn, rid)
        raise NotFound(what="volume with " + key, ref=value)
