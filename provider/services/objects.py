"""Objects (Swift-like): upload, download, list, show, metadata, delete."""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from typing import IO

from sqlalchemy import Connection, select, update

from provider.catalog import schema as t
from provider.errors import AlreadyExists, Conflict, InvalidInput
from provider.model import Resource
from provider.services.base import Service
from provider.utils.faults import failpoint
from provider.utils.host import new_id, now
from provider.utils.names import check_key, check_value, split_object_ref

SNAPSHOTS_CONTAINER = "snapshots"


class ObjectService(Service):
    def upload(
        self,
        path: str,
        stream: IO[bytes],
        *,
        meta: dict[str, str] | None = None,
        content_type: str = "application/octet-stream",
        progress: Callable[[int], None] | None = None,
    ) -> Resource:
        """Store ``stream`` as a new read-only object at ``container/name``; return it."""
        container, name = split_object_ref(path)
        meta = {check_key(k, "metadata key"): check_value(k, v) for k, v in (meta or {}).items()}
        backend = self.store.backend()
        rid = new_id()
        locator = backend.new_locator(rid, "ro")
        with self.write_then_remove() as (conn, _):
            self._reserve_name(conn, container, name)
            self.insert_pending(
                conn,
                rid=rid,
                size=0,
                mode="ro",
                backend=backend.name,
                locator=locator,
                disk_format="raw",
                parent=None,
                op="upload",
                remove_on_abort=[locator],
            )
            conn.execute(
                t.object_views.insert().values(
                    resource_id=rid,
                    container=container,
                    name=name,
                    content_type=content_type,
                    meta=json.dumps(meta),
                    created_at=now(),
                )
            )
        try:
            result = backend.import_stream(locator, stream, progress)
            failpoint("upload.after-backend")
            with self.catalog.write() as conn:
                self.mark_available(conn, rid, size=result.size, sha256=result.sha256)
        except BaseException:
            self.abort_pending(rid)
            raise
        return self.get(rid)

    def _reserve_name(self, conn: Connection, container: str, name: str) -> None:
        row = conn.execute(
            select(t.object_views.c.resource_id).where(
                t.object_views.c.container == container, t.object_views.c.name == name
            )
        ).first()
        if row is not None:
            raise AlreadyExists(what="object", name=f"{container}/{name}")

    def readable(self, ref: str) -> Resource:
        """The read-only resource ``ref`` names, if the caller may read it (what download streams)."""
        with self.catalog.read() as conn:
            res = self.resolve(conn, ref, "object")
            self.check_read(conn, res)
        if res.mode != "ro":
            raise Conflict(reason=f"{res.name!r} is a volume; snapshot it and download the snapshot")
        return res

    def download(self, ref: str, out: IO[bytes]) -> Resource:
        res = self.readable(ref)
        self.store.backend(res.backend).export_stream(res.locator, res.disk_format, out)
        return res

    def list(self, container: str | None = None) -> builtins.list[Resource]:
        where = t.object_views.c.container == container if container else None
        return self.list_view(t.object_views, t.object_views.c.container, t.object_views.c.name, where=where)

    def show(self, ref: str) -> Resource:
        with self.catalog.read() as conn:
            res = self.resolve(conn, ref, "object")
            self.check_read(conn, res)
            if res.object is None:
                raise InvalidInput("%(ref)r is a %(kind)s, not an object", ref=ref, kind=res.kind)
            return res

    def set_meta(self, ref: str, set_meta: dict[str, str], unset: builtins.list[str]) -> Resource:
        with self.catalog.write() as conn:
            res = self.resolve(conn, ref, "object")
            self.check_owner(res)
            if res.object is None:
                raise InvalidInput("%(ref)r is a %(kind)s, not an object", ref=ref, kind=res.kind)
            meta = dict(res.object.meta)
            for key in unset:
                meta.pop(key, None)
            meta.update({check_key(k, "metadata key"): check_value(k, v) for k, v in set_meta.items()})
            conn.execute(
                update(t.object_views)
                .where(t.object_views.c.resource_id == res.id)
                .values(meta=json.dumps(meta))
            )
            return self.load(conn, res.id)

    def delete(self, ref: str) -> None:
        """Delete an object; refused while it is registered as an image or snapshot.

        Data that clones still use stays on disk, hidden, until the last of them goes.
        """
        with self.write_then_remove() as (conn, files):
            res = self.resolve(conn, ref, "object")
            self.check_owner(res)
            if res.mode != "ro":
                raise Conflict(reason=f"{res.name!r} is a volume: use 'atoll volume delete'")
            if res.image is not None:
                raise Conflict(
                    reason=f"object {res.object.path if res.object else res.id!r} is still registered as "
                    f"{res.kind} {res.image.name!r}: unregister it first (atoll image unregister "
                    f"{res.image.name})"
                )
            self.store.datapath.refuse_if_attached(res, "delete it")
            files += self.hide(conn, res.id)
