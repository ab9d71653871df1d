"""The Image API's operations (Glance v2 semantics) on the image view of Atoll resources.

An image created through the API and not yet uploaded is *queued*: a ``pending`` resource row whose
operation is ``image-queued`` (never reaped: no process owns it) plus its image view; uploading writes
the data straight into the backend and makes the resource available, so the image id is the resource
id from the start. Uploads hash md5 and sha512 (Glance's ``checksum`` and ``os_hash_value``) in a
thread beside the backend's own sha256. A failed or interrupted upload removes the partial data and
puts the image back to ``queued``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from typing import IO, Any, cast

from sqlalchemy import Connection, delete, select, update

from atoll_common.rollback import rollback
from customization.properties import validate
from provider.catalog import schema as t
from provider.errors import AlreadyExists, Conflict, InvalidInput, NotFound, PermissionDenied, TooLarge
from provider.services import protections
from provider.services.base import Service, name_key, op_owner_alive, res_key
from provider.services.hashing import HashingReader
from provider.services.image_list import ImageQuery, query_images
from provider.services.image_records import QUEUED_OP, ImageRecord, lineage, load_record
from provider.utils.host import HOST, my_start, new_id, now
from provider.utils.names import check_key, check_name, check_value

LOG = logging.getLogger(__name__)

DISK_FORMATS = ("raw", "iso", "qcow2", "vmdk", "vhdx", "vpc", "vdi", "vhd", "ami", "ari", "aki", "ploop")
CONTAINER_FORMATS = ("bare", "ovf", "ova", "ami", "ari", "aki", "docker", "compressed")
UPLOADABLE = ("raw", "iso")
VISIBILITIES = ("private", "shared", "public", "community")
MEMBER_STATUSES = ("pending", "accepted", "rejected")


class GlanceService(Service):
    # ---- access ----------------------------------------------------------------------------------
    def _writer(self) -> None:
        if self.caller.read_only:
            raise PermissionDenied(reason="the reader role may not change anything")

    def record(self, conn: Connection, image_id: str) -> ImageRecord:
        rec = load_record(conn, image_id)
        if rec is None or not self.may_read(rec):
            raise NotFound(what="image", ref=image_id)
        return rec

    def may_read(self, rec: ImageRecord) -> bool:
        c = self.caller
        return c.admin or rec.owner == c.name or rec.visibility == "public" or c.name in rec.members

    def _owned(self, conn: Connection, image_id: str) -> ImageRecord:
        rec = self.record(conn, image_id)
        self._writer()
        if not (self.caller.admin or rec.owner == self.caller.name):
            raise PermissionDenied(reason=f"image {image_id} belongs to project {rec.owner}")
        return rec

    def show(self, image_id: str) -> ImageRecord:
        with self.catalog.read() as conn:
            return self.record(conn, image_id)

    # ---- create ----------------------------------------------------------------------------------
    def create(self, fields: dict[str, Any], properties: dict[str, str], tags: list[str]) -> ImageRecord:
        """A queued image (no data yet) owned by the caller's project."""
        self._writer()
        rid = fields.pop("id", None) or new_id()
        if self.store.image_adoption.adopt(rid, fields, properties, tags):  # an object keeps its id
            return self.show(rid)
        self.store.quotas.require(images=1)
        name = fields.get("name")
        if name is not None:
            check_name(name, "image name")
        disk_format = fields.get("disk_format") or "raw"
        container_format = fields.get("container_format") or "bare"
        visibility = fields.get("visibility") or "shared"
        self._check_enums(disk_format, container_format, visibility)
        if visibility == "public" and not self.caller.admin:
            raise PermissionDenied(reason="only an admin may publicize an image")
        props = self._check_properties({}, properties)
        glance: dict[str, Any] = {
            k: fields[k] for k in ("min_disk", "min_ram", "protected", "os_hidden") if k in fields
        }
        glance["community"] = visibility == "community"
        backend = self.store.backend()
        stamp = now()
        keys = [res_key(rid), *([name_key("image", name)] if name is not None else [])]
        with self.catalog.write(*keys) as conn:
            if conn.execute(select(t.resources.c.id).where(t.resources.c.id == rid)).first():
                raise AlreadyExists(what="image", name=rid)
            if name is not None:
                self.store.images.check_name_free(conn, name, self.caller.name)
            self.store.identity.ensure_project(conn, self.caller.name)
            conn.execute(
                t.resources.insert().values(
                    id=rid,
                    size=0,
                    mode="ro",
                    backend=backend.name,
                    locator=backend.new_locator(rid, "ro"),
                    disk_format="raw",
                    parent=None,
                    state="pending",
                    owner=self.caller.name,
                    created_at=stamp,
                    updated_at=stamp,
                    op=QUEUED_OP,
                    op_data=json.dumps({}),
                )
            )
            conn.execute(
                t.image_views.insert().values(
                    resource_id=rid,
                    name=name or rid,
                    owner=self.caller.name,
                    visibility="public" if visibility == "community" else visibility,
                    status="queued",
                    disk_format=disk_format,
                    container_format=container_format,
                    properties=json.dumps(props, sort_keys=True),
                    created_at=stamp,
                    updated_at=stamp,
                    glance=json.dumps(glance, sort_keys=True),
                )
            )
            self._set_tags(conn, rid, tags)
            return self.record(conn, rid)

    @staticmethod
    def _check_enums(disk_format: str | None, container_format: str | None, visibility: str | None) -> None:
        for value, allowed, what in (
            (disk_format, DISK_FORMATS, "disk_format"),
            (container_format, CONTAINER_FORMATS, "container_format"),
            (visibility, VISIBILITIES, "visibility"),
        ):
            if value is not None and value not in allowed:
                raise InvalidInput(
                    "%(what)s %(v)r is not one of %(all)s", what=what, v=value, all=", ".join(allowed)
                )

    def _check_properties(self, old: dict[str, str], new: dict[str, str]) -> dict[str, str]:
        clean = {check_key(k, "property"): check_value(k, str(v)) for k, v in new.items()}
        protections.check_changes(self.store.config.images, self.caller, old, clean)
        validate(clean)  # snf-image's schema, strict: PropertyError (an InvalidInput) on a bad value
        return clean

    def _set_tags(self, conn: Connection, rid: str, tags: list[str]) -> None:
        for tag in dict.fromkeys(tags):
            if not isinstance(tag, str) or not 0 < len(tag) <= 255:
                raise InvalidInput("a tag is a string of 1 to 255 characters")
            conn.execute(t.image_tags.insert().values(resource_id=rid, tag=tag))

    # ---- upload ----------------------------------------------------------------------------------
    def upload(
        self,
        image_id: str,
        stream: IO[bytes],
        declared: int | None,
        limit: int,
        *,
        defer_sha256: bool = False,
    ) -> ImageRecord:
        """Stream the image data into the backend; the image becomes active. ``defer_sha256``: the
        resource's sha256 is left to the caller (``scrub.record_digest``), one hash less inline."""
        with self.catalog.write(res_key(image_id)) as conn:
            rec = self._owned(conn, image_id)
            if not rec.queued or rec.status != "queued":
                raise Conflict(reason=f"image {image_id} is {rec.status}: data can be uploaded only once")
            if rec.disk_format not in UPLOADABLE:
                raise InvalidInput(
                    "disk_format %(f)s cannot be stored: images are stored raw (upload raw or iso data, or "
                    "qcow2, vmdk, vhd, vhdx, vpc or vdi data, which is converted)",
                    f=rec.disk_format,
                )
            if declared is not None and declared > limit:
                raise TooLarge(what="the image", limit=limit)
            row = conn.execute(select(t.resources).where(t.resources.c.id == image_id)).one()
            uploader = {"host": HOST, "pid": os.getpid(), "proc_start": my_start()}
            conn.execute(
                update(t.resources)
                .where(t.resources.c.id == image_id)
                .values(op_data=json.dumps({"upload": uploader}))
            )
            self._status(conn, image_id, "saving")
        backend = self.store.backend(row.backend)
        with rollback() as undo:
            undo.push(self._back_to_queued, image_id, row.backend, row.locator)
            reader = HashingReader(stream, limit)
            undo.push(reader.close)
            result = backend.import_stream(row.locator, cast(IO[bytes], reader), digest=not defer_sha256)
            digests = reader.finish()
            if declared is not None and result.size != declared:
                raise InvalidInput(
                    "the body held %(got)d bytes but Content-Length said %(want)d",
                    got=result.size,
                    want=declared,
                )
            with self.catalog.write(res_key(image_id)) as conn:
                self.mark_available(conn, image_id, size=result.size, sha256=result.sha256)
                glance = {**rec.glance, **digests, "virtual_size": result.size}
                conn.execute(
                    update(t.image_views)
                    .where(t.image_views.c.resource_id == image_id)
                    .values(status="active", glance=json.dumps(glance, sort_keys=True), updated_at=now())
                )
            self.store.images.check_raw(self.store.images.get(image_id))
        return self.show(image_id)

    def _status(self, conn: Connection, image_id: str, status: str) -> None:
        conn.execute(
            update(t.image_views)
            .where(t.image_views.c.resource_id == image_id)
            .values(status=status, updated_at=now())
        )

    def _back_to_queued(self, image_id: str, backend: str, locator: str) -> None:
        """Forget a failed upload: no data, status queued (the resource goes back to pending)."""
        with self.catalog.write(res_key(image_id)) as conn:
            conn.execute(
                update(t.resources)
                .where(t.resources.c.id == image_id)
                .values(
                    state="pending",
                    op=QUEUED_OP,
                    op_data=json.dumps({}),
                    size=0,
                    sha256=None,
                    updated_at=now(),
                )
            )
            self._status(conn, image_id, "queued")
        try:
            if self.store.backend(backend).exists(locator):
                self.store.backend(backend).remove(locator)
        except Exception:  # fsck finds the orphan
            LOG.exception("could not remove the partial upload %s", locator)

    def recover_uploads(self) -> int:
        """Put images whose uploading process died back to queued (run at server start)."""
        with self.catalog.read() as conn:
            rows = conn.execute(
                select(t.resources).where(t.resources.c.state == "pending", t.resources.c.op == QUEUED_OP)
            ).all()
        count = 0
        for row in rows:
            up = json.loads(row.op_data or "{}").get("upload")
            if up is None:
                continue
            with self.catalog.read() as conn:
                res = self.load(conn, row.id, states=("pending",))
            if op_owner_alive(replace(res, op_pid=up.get("pid"), op_data=up)):
                continue
            LOG.warning("upload of image %s was interrupted; it is queued again", row.id)
            self._back_to_queued(row.id, row.backend, row.locator)
            count += 1
        return count

    # ---- changes ---------------------------------------------------------------------------------
    def update(
        self,
        image_id: str,
        changes: dict[str, Any],
        props: dict[str, str],
        removed: list[str],
        tags: list[str] | None,
    ) -> ImageRecord:
        """Apply a parsed JSON patch: core attributes, properties set and removed, the tag list."""
        keys = [res_key(image_id), *([name_key("image", changes["name"])] if changes.get("name") else [])]
        with self.catalog.write(*keys) as conn:
            rec = self._owned(conn, image_id)
            new_props = {k: v for k, v in rec.properties.items() if k not in removed}
            for key in removed:
                if key not in rec.properties:
                    raise Conflict(reason=f"image {image_id} has no property {key}")
            new_props.update(props)
            values: dict[str, Any] = {"updated_at": now()}
            values["properties"] = json.dumps(
                self._check_properties(rec.properties, new_props), sort_keys=True
            )
            glance = dict(rec.glance)
            self._core_changes(conn, rec, changes, values, glance)
            values["glance"] = json.dumps(glance, sort_keys=True)
            conn.execute(
                update(t.image_views).where(t.image_views.c.resource_id == image_id).values(**values)
            )
            if tags is not None:
                conn.execute(delete(t.image_tags).where(t.image_tags.c.resource_id == image_id))
                self._set_tags(conn, image_id, tags)
            return self.record(conn, image_id)

    def _core_changes(
        self,
        conn: Connection,
        rec: ImageRecord,
        changes: dict[str, Any],
        values: dict[str, Any],
        glance: dict[str, Any],
    ) -> None:
        if "name" in changes:
            name = changes["name"] or rec.id
            if name != rec.id:
                check_name(name, "image name")
            self.store.images.check_name_free(conn, name, rec.owner, exclude=rec.id)
            values["name"] = name
        if "visibility" in changes:
            vis = changes["visibility"]
            self._check_enums(None, None, vis)
            if vis == "public" and rec.api_visibility != vis and not self.caller.admin:
                raise PermissionDenied(reason="only an admin may publicize an image")
            values["visibility"] = "public" if vis == "community" else vis
            glance["community"] = vis == "community"
        for key in ("disk_format", "container_format"):
            if key in changes:
                if not rec.queued:
                    raise Conflict(reason=f"{key} can be changed only while the image is queued")
                self._check_enums(changes.get("disk_format"), changes.get("container_format"), None)
                values[key] = changes[key]
        for key in ("min_disk", "min_ram"):
            if key in changes:
                if not isinstance(changes[key], int) or changes[key] < 0:
                    raise InvalidInput("%(key)s must be a non-negative integer", key=key)
                glance[key] = changes[key]
        for key in ("protected", "os_hidden"):
            if key in changes:
                if not isinstance(changes[key], bool):
                    raise InvalidInput("%(key)s must be true or false", key=key)
                glance[key] = changes[key]

    def add_tag(self, image_id: str, tag: str) -> None:
        with self.catalog.write(res_key(image_id)) as conn:
            rec = self._owned(conn, image_id)
            if tag not in rec.tags:
                self._set_tags(conn, image_id, [tag])

    def remove_tag(self, image_id: str, tag: str) -> None:
        with self.catalog.write(res_key(image_id)) as conn:
            rec = self._owned(conn, image_id)
            if tag not in rec.tags:
                raise NotFound(what="tag", ref=tag)
            conn.execute(
                delete(t.image_tags).where(t.image_tags.c.resource_id == image_id, t.image_tags.c.tag == tag)
            )

    def set_active(self, image_id: str, active: bool) -> None:
        """deactivate / reactivate: a deactivated image's data cannot be downloaded (except by admins)."""
        with self.catalog.write(res_key(image_id)) as conn:
            rec = self._owned(conn, image_id)
            if rec.status not in ("active", "deactivated"):
                raise Conflict(
                    reason=f"image {image_id} is {rec.status}: only active images can be (de)activated"
                )
            self._status(conn, image_id, "active" if active else "deactivated")

    # ---- delete ----------------------------------------------------------------------------------
    def delete(self, image_id: str) -> None:
        """Delete the image view; an image that is also an Object keeps its data as that Object."""
        with self.write_then_remove() as (conn, files):
            rec = self._owned(conn, image_id)
            if rec.glance.get("protected"):
                raise PermissionDenied(reason=f"image {image_id} is protected: set protected=false first")
            removable = [
                k
                for k in rec.properties
                if not protections.may(self.store.config.images, self.caller, k, "delete")
            ]
            if removable:
                raise PermissionDenied(reason=f"image carries protected properties ({', '.join(removable)})")
            if rec.queued:
                files += self._drop_queued(conn, image_id)
                return
            if rec.has_object:
                conn.execute(delete(t.image_views).where(t.image_views.c.resource_id == image_id))
                return
            res = self.load(conn, image_id)
            self.store.datapath.refuse_if_attached(res, "delete it")
            files += self.hide(conn, image_id)

    def _drop_queued(self, conn: Connection, image_id: str) -> list[tuple[str, str]]:
        row = conn.execute(select(t.resources).where(t.resources.c.id == image_id)).one()
        conn.execute(delete(t.image_views).where(t.image_views.c.resource_id == image_id))
        conn.execute(delete(t.resources).where(t.resources.c.id == image_id))
        return [(row.backend, row.locator)] if self.store.backend(row.backend).exists(row.locator) else []

    # ---- list ------------------------------------------------------------------------------------
    def list(self, query: ImageQuery) -> tuple[list[ImageRecord], bool]:
        with self.catalog.read() as conn:
            return query_images(conn, self.caller, query)

    def lineage(self, rec: ImageRecord) -> dict[str, str]:
        with self.catalog.read() as conn:
            return lineage(conn, rec)
