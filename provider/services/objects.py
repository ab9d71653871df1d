"""Objects (Swift-like): upload, download, list, show, metadata, delete."""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from typing import IO, cast

from sqlalchemy import Connection, update

from provider.catalog import schema as t
from provider.errors import AlreadyExists, ChecksumMismatch, Conflict, InvalidInput
from provider.model import Resource
from provider.services import names
from provider.services.base import Service
from provider.utils.blockhash import HashingReader
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
        digest: bool = False,
        defer_sha256: bool = False,
        expect_md5: str | None = None,
        expect_size: int | None = None,
        replace: bool = False,
    ) -> Resource:
        """Store ``stream`` as a new read-only object at ``container/name``; return it.

        ``digest``: also compute the md5 and the block hashes as the bytes pass (what the Object API
        serves as ETag and hashmap); otherwise they are computed on first use. ``defer_sha256``: the
        resource's sha256 is left to the caller (``scrub.record_digest`` once it has answered; ``atoll
        fsck --scrub`` fills any that stays unset), so a client waits for one hash less. ``expect_md5`` and
        ``expect_size``: refuse (and keep nothing) when the bytes differ from what the client declared.
        ``replace``: an existing object of that name (the caller's, not an image) is replaced once the
        new bytes are safely stored, as Swift does.
        """
        container, name = split_object_ref(path)
        meta = {check_key(k, "metadata key"): check_value(k, v) for k, v in (meta or {}).items()}
        if expect_size is not None:
            self.store.quotas.require(object_bytes=expect_size)  # refused before a byte is stored
        backend = self.store.backend()
        rid = new_id()
        locator = backend.new_locator(rid, "ro")
        with self.write_then_remove() as (conn, _):
            if replace:
                self.replaceable(conn, container, name)
            else:
                self.reserve_name(conn, container, name)
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
            self.insert_view(
                conn, rid, container, f".atoll-upload/{rid}" if replace else name, content_type, meta
            )
        hasher = HashingReader(stream) if digest or expect_md5 else None
        try:
            result = backend.import_stream(
                locator, cast(IO[bytes], hasher) if hasher else stream, progress, digest=not defer_sha256
            )
            failpoint("upload.after-backend")
            if expect_size is not None and result.size != expect_size:
                raise InvalidInput(
                    "the body ended after %(got)d of the %(size)d bytes declared",
                    got=result.size,
                    size=expect_size,
                )
            if expect_md5 is not None and hasher is not None and hasher.md5 != expect_md5.lower():
                raise ChecksumMismatch(expected=expect_md5, got=hasher.md5)
            with self.write_then_remove() as (conn, files):
                self.store.quotas.check(conn, self.caller.name, object_bytes=result.size)
                if replace:
                    files += self.take_name(conn, rid, container, name)
                self.mark_available(conn, rid, size=result.size, sha256=result.sha256)
                if hasher is not None:
                    self.store.hashmaps.record(conn, backend.name, locator, hasher.finish())
                    self.store.hashmaps.record_md5(conn, backend.name, locator, cast(str, hasher.md5))
        except BaseException:
            self.abort_pending(rid)
            raise
        finally:
            if hasher is not None:
                hasher.close()
        return self.get(rid)

    def replaceable(self, conn: Connection, container: str, name: str) -> Resource | None:
        """The object a replacing upload would replace, if the caller may replace it."""
        rid = self.name_taken(conn, container, name, self.caller.name)
        if rid is None:
            return None
        old = self.load(conn, rid, states=("available", "pending"))
        if old.state != "available":  # name_taken looked in the caller's project only
            raise AlreadyExists(what="object", name=f"{container}/{name}")
        if old.image is not None:
            raise Conflict(reason=f"object {container}/{name} is registered as {old.kind} {old.image.name!r}")
        return old

    def take_name(self, conn: Connection, rid: str, container: str, name: str) -> list[tuple[str, str]]:
        old = self.replaceable(conn, container, name)
        files = self.hide(conn, old.id) if old is not None else []
        conn.execute(update(t.object_views).where(t.object_views.c.resource_id == rid).values(name=name))
        return files

    def insert_view(
        self, conn: Connection, rid: str, container: str, name: str, content_type: str, meta: dict[str, str]
    ) -> None:
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

    def reserve_name(self, conn: Connection, container: str, name: str, owner: str | None = None) -> None:
        if self.name_taken(conn, container, name, owner or self.caller.name) is not None:
            raise AlreadyExists(what="object", name=f"{container}/{name}")

    @staticmethod
    def name_taken(conn: Connection, container: str, name: str, owner: str) -> str | None:
        """The id of project ``owner``'s object ``container/name`` (available or being made), if any:
        object names are per project, as Swift's are per account."""
        return names.object_id(conn, container, name, owner, ("available", "pending"))

    def copy(
        self,
        source: str,
        path: str,
        *,
        meta: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> Resource:
        """A new object at ``container/name`` with the bytes of the read-only ``source``: a thin clone
        that shares the source's backend object (no data copied, the same cost at any size)."""
        container, name = split_object_ref(path)
        with self.write_then_remove() as (conn, _):
            src = self.resolve(conn, source, "object")
            self.check_read(conn, src)
            if src.mode != "ro":
                raise Conflict(reason=f"{src.name!r} is a volume; snapshot it and copy the snapshot")
            self.store.quotas.check(conn, self.caller.name, object_bytes=src.size)  # a copy counts in full
            new_meta = dict(src.object.meta) if src.object else {}
            new_meta.update(
                {check_key(k, "metadata key"): check_value(k, v) for k, v in (meta or {}).items()}
            )
            kind = content_type or (src.object.content_type if src.object else "application/octet-stream")
            self.reserve_name(conn, container, name)
            rid = new_id()
            self.insert_pending(
                conn,
                rid=rid,
                size=src.size,
                mode="ro",
                backend=src.backend,
                locator=src.locator,
                disk_format=src.disk_format,
                parent=src.id,
                op="copy",
                remove_on_abort=[],
            )
            conn.execute(t.deps.insert().values(resource_id=rid, requires_id=src.id))
            self.insert_view(conn, rid, container, name, kind, new_meta)
            self.mark_available(conn, rid, sha256=src.sha256)
            return self.load(conn, rid)

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
        with self.write_one(ref, "object") as conn:
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
