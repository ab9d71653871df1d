"""Volume API snapshots (Cinder v3): Atoll Snapshots of a project's volumes, by id. A snapshot is also an
image (``image_type: snapshot``) and an object in the ``snapshots`` container; its Cinder description and
metadata live in that object's metadata."""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, update

from provider.catalog import schema as t
from provider.errors import Conflict, InvalidInput, NotFound
from provider.model import Resource
from provider.services.base import Service, res_key
from provider.services.quotas import gib
from provider.services.volume_api_attachments import attachments_of
from provider.services.volume_api_model import check_metadata
from provider.services.volumes import SNAPSHOT_OF
from provider.utils.host import new_id
from provider.utils.names import UUID_RE, check_name, check_value
from provider.utils.props import get_prop

DESCRIPTION_KEY = "description"


@dataclass(frozen=True)
class SnapshotInfo:
    """What the Volume API shows of one snapshot (``size`` in bytes)."""

    id: str
    name: str
    size: int
    volume_id: str | None
    owner: str
    created_at: str
    updated_at: str
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    status: str = "available"


class VolumeSnapshotService(Service):
    def project(self) -> str:
        return self.store.quotas.project()

    def _owned(self, conn: Connection, sid: str) -> Resource:
        """The caller's project's snapshot ``sid``; anything else (another project's) is not found."""
        if not UUID_RE.match(sid or ""):
            raise NotFound(what="snapshot", ref=sid)
        try:
            res = self.load(conn, sid)
        except NotFound:
            raise NotFound(what="snapshot", ref=sid) from None
        if res.kind != "snapshot" or not (self.caller.admin or res.owner == self.project()):
            raise NotFound(what="snapshot", ref=sid)
        return res

    def info(self, res: Resource) -> SnapshotInfo:
        assert res.image is not None
        meta = dict(res.object.meta) if res.object else {}
        description = meta.pop(DESCRIPTION_KEY, None)
        return SnapshotInfo(
            id=res.id,
            name=res.image.name,
            size=res.size,
            volume_id=get_prop(res.image.properties, SNAPSHOT_OF) or res.parent,
            owner=res.owner,
            created_at=res.created_at,
            updated_at=res.image.updated_at,
            description=description,
            metadata=meta,
        )

    def show(self, sid: str) -> SnapshotInfo:
        with self.catalog.read() as conn:
            return self.info(self._owned(conn, sid))

    def list(self, *, volume_id: str | None = None, name: str | None = None) -> builtins.list[SnapshotInfo]:
        with self.catalog.read() as conn:
            q = (
                select(t.image_views.c.resource_id)
                .join(t.resources, t.resources.c.id == t.image_views.c.resource_id)
                .where(t.resources.c.state == "available", t.resources.c.mode == "ro")
                .order_by(t.resources.c.created_at.desc())
            )
            if not self.caller.admin:
                q = q.where(t.resources.c.owner == self.project())
            found = [self.load(conn, rid) for (rid,) in conn.execute(q)]
        snaps = [self.info(r) for r in found if r.kind == "snapshot"]
        return [
            s
            for s in snaps
            if (volume_id is None or s.volume_id == volume_id) and (name is None or s.name == name)
        ]

    def create(
        self,
        volume_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        force: bool = False,
    ) -> SnapshotInfo:
        """Snapshot a volume (no data copied); an attached one only with ``force`` (point-in-time, live
        through the data path)."""
        meta = check_metadata(metadata)
        if DESCRIPTION_KEY in meta:
            raise InvalidInput("snapshot metadata key %(k)r is reserved (use description)", k=DESCRIPTION_KEY)
        if description is not None:
            meta[DESCRIPTION_KEY] = check_value("description", description)
        name = check_name(name, "snapshot name") if name else f"snapshot-{new_id()[:8]}"
        with self.catalog.read() as conn:
            vol = self.store.volume_api.owned(conn, volume_id, "volume")
            if attachments_of(conn, vol.id) and not force:
                raise Conflict(reason=f"volume {vol.id} is attached: pass force for a point-in-time snapshot")
        with self.store.quotas.reserve(snapshots=1, gigabytes=gib(vol.size)):
            snap = self.store.volumes.snapshot(vol.id, name)
        if meta:
            self._set_object_meta(snap.id, meta)
        return self.show(snap.id)

    def _set_object_meta(self, sid: str, meta: dict[str, str]) -> None:
        with self.catalog.write(res_key(sid)) as conn:
            conn.execute(
                update(t.object_views)
                .where(t.object_views.c.resource_id == sid)
                .values(meta=json.dumps(meta, sort_keys=True))
            )

    def update(
        self,
        sid: str,
        *,
        name: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SnapshotInfo:
        with self.catalog.read() as conn:
            snap = self._owned(conn, sid)
        if name is not None:
            self.store.images.set(snap.id, name=check_name(name, "snapshot name"))
        if description is not None or metadata is not None:
            current = self.info(snap)
            meta = check_metadata(metadata) if metadata is not None else current.metadata
            text = description if description is not None else current.description
            if text is not None:
                meta[DESCRIPTION_KEY] = check_value("description", text)
            self._set_object_meta(snap.id, meta)
        return self.show(snap.id)

    def set_metadata(self, sid: str, metadata: dict[str, Any], *, replace: bool = False) -> dict[str, str]:
        """Merge (or with ``replace`` set) the snapshot's metadata; return all of it."""
        meta = check_metadata(metadata)
        if DESCRIPTION_KEY in meta:
            raise InvalidInput("snapshot metadata key %(k)r is reserved (use description)", k=DESCRIPTION_KEY)
        merged = meta if replace else {**self.show(sid).metadata, **meta}
        return self.update(sid, metadata=merged).metadata

    def delete_metadata(self, sid: str, key: str) -> None:
        current = self.show(sid).metadata
        if key not in current:
            raise NotFound(what="metadata key", ref=key)
        self.update(sid, metadata={k: v for k, v in current.items() if k != key})

    def delete(self, sid: str) -> None:
        """Delete the snapshot's views; its data stays hidden while clones depend on it."""
        with self.catalog.read() as conn:
            snap = self._owned(conn, sid)
        self.store.images.delete(snap.id)
