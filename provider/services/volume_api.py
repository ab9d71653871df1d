"""The Volume API (Cinder v3) as a service: a project's volumes by id, created empty or from an image, a
snapshot or another volume under quotas; an image's clone gets the tasks that need no secret; a failed
creation leaves no volume, only an ``error`` record with the reason."""

from __future__ import annotations

import builtins
import json
from typing import Any

from sqlalchemy import Connection, delete, select, update

from provider.catalog import schema as t
from provider.errors import AtollError, Conflict, InvalidInput, NotFound
from provider.model import Resource
from provider.services.base import res_key
from provider.services.protections import readable
from provider.services.quotas import GIB, gib
from provider.services.volume_api_attachments import attachments_of
from provider.services.volume_api_messages import COPY_IMAGE_TO_VOLUME
from provider.services.volume_api_model import (
    SORT_KEYS,
    VolumeInfo,
    check_availability_zone,
    check_metadata,
    check_size,
    check_volume_type,
    hostname_for,
    image_metadata,
)
from provider.services.volume_api_records import VolumeRecords, origin_json
from provider.utils.host import new_id, now
from provider.utils.names import UUID_RE, check_name, check_value
from provider.utils.props import EXCLUDE_ALL_TASKS


class VolumeApiService(VolumeRecords):
    def info(self, conn: Connection, res: Resource) -> VolumeInfo:
        assert res.volume is not None
        atts = tuple(attachments_of(conn, res.id))
        status = "available"
        for state in ("attached", "attaching", "reserved"):
            if any(a.status == state for a in atts):
                status = "in-use" if state == "attached" else state
                break
        return VolumeInfo(
            id=res.id,
            name=res.volume.name,
            size=res.size,
            status=status,
            owner=res.owner,
            created_at=res.created_at,
            updated_at=res.updated_at,
            description=res.volume.description,
            metadata=dict(res.volume.meta),
            attachments=atts,
            **self._origin(conn, res),
        )

    def _failure(self, row: Any) -> VolumeInfo:
        return VolumeInfo(
            id=row.id,
            name=row.name,
            size=row.size,
            status="error",
            owner=row.owner,
            created_at=row.created_at,
            error=row.reason,
        )

    def _failed(self, conn: Connection, vid: str) -> Any:
        q = select(t.volume_failures).where(t.volume_failures.c.id == vid)
        if not self.caller.admin:
            q = q.where(t.volume_failures.c.owner == self.project())
        return conn.execute(q).first()

    def show(self, vid: str) -> VolumeInfo:
        with self.catalog.read() as conn:
            if UUID_RE.match(vid or "") and (row := self._failed(conn, vid)) is not None:
                return self._failure(row)
            return self.info(conn, self.owned(conn, vid))

    def list(
        self,
        *,
        name: str | None = None,
        status: str | None = None,
        metadata: dict[str, str] | None = None,
        sort_key: str = "created_at",
        sort_dir: str = "desc",
        limit: int | None = None,
        marker: str | None = None,
        all_projects: bool = False,
    ) -> builtins.list[VolumeInfo]:
        """The project's volumes (an admin's ``all_projects``: everyone's), filtered, sorted (Cinder's
        default: newest first) and paged."""
        if sort_key not in SORT_KEYS or sort_dir not in ("asc", "desc"):
            raise InvalidInput("sort by one of %(keys)s, asc or desc", keys=", ".join(SORT_KEYS))
        if limit is not None and limit < 0:
            raise InvalidInput("limit must be a positive integer")
        everyone = all_projects and self.caller.admin
        with self.catalog.read() as conn:
            found = [self.info(conn, r) for r in self._project_volumes(conn, everyone)]
            q = select(t.volume_failures)
            if not everyone:
                q = q.where(t.volume_failures.c.owner == self.project())
            found += [self._failure(row) for row in conn.execute(q)]
        found = [
            v
            for v in found
            if (name is None or v.name == name)
            and (status is None or v.status == status)
            and all(v.metadata.get(k) == val for k, val in (metadata or {}).items())
        ]
        found.sort(key=lambda v: (getattr(v, sort_key), v.id), reverse=sort_dir == "desc")
        if marker is not None:
            ids = [v.id for v in found]
            if marker not in ids:
                raise InvalidInput("marker %(marker)r is not a volume of this listing", marker=marker)
            found = found[ids.index(marker) + 1 :]
        return found if limit is None else found[:limit]

    def _project_volumes(self, conn: Connection, everyone: bool) -> builtins.list[Resource]:
        q = (
            select(t.volume_views.c.resource_id)
            .join(t.resources, t.resources.c.id == t.volume_views.c.resource_id)
            .where(t.resources.c.state == "available")
        )
        if not everyone:
            q = q.where(t.resources.c.owner == self.project())
        return [self.load(conn, rid) for (rid,) in conn.execute(q)]

    # ---- create ----------------------------------------------------------------------------------
    def _source(
        self, conn: Connection, image_ref: str | None, snapshot_id: str | None, source_volid: str | None
    ) -> Resource | None:
        given = [x for x in (image_ref, snapshot_id, source_volid) if x is not None]
        if len(given) > 1:
            raise InvalidInput("give at most one of imageRef, snapshot_id and source_volid")
        if source_volid is not None:
            return self.owned(conn, source_volid)
        ref, what = (image_ref, "image") if image_ref is not None else (snapshot_id, "snapshot")
        if ref is None:
            return None
        if not UUID_RE.match(ref):
            raise NotFound(what=what, ref=ref)
        try:
            res = self.load(conn, ref)
        except NotFound:
            raise NotFound(what=what, ref=ref) from None
        if what == "snapshot":
            readable = res.kind == "snapshot" and (self.caller.admin or res.owner == self.project())
        else:
            readable = res.image is not None and self.can_read(conn, res)
        if not readable:
            raise NotFound(what=what, ref=ref)
        return res

    def create(
        self,
        size_gib: int | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        image_ref: str | None = None,
        snapshot_id: str | None = None,
        source_volid: str | None = None,
        request_id: str | None = None,
        placement: tuple[str | None, str | None] = (None, None),
    ) -> VolumeInfo:
        """Create a volume; a clone of an image gets the image's tasks that need no secret (partition and
        filesystem growth, host keys, machine id, hostname from metadata ``hostname`` or the name). When
        they fail, an ``error`` volume and a user message (naming ``request_id``) say why."""
        check_volume_type(placement[0])  # (volume type, availability zone): Atoll has one of each
        check_availability_zone(placement[1])
        meta = check_metadata(metadata)
        name = check_name(name, "volume name") if name else f"volume-{new_id()[:8]}"
        if description is not None:
            check_value("description", description)
        with self.catalog.read() as conn:
            src = self._source(conn, image_ref, snapshot_id, source_volid)
        size_gib = check_size(size_gib if size_gib is not None or src is None else gib(src.size))
        hostname = hostname_for(name, meta) if src is not None and src.kind == "image" else None
        with self.store.quotas.reserve(volumes=1, gigabytes=size_gib):
            if src is not None and src.mode == "rw":
                vol = self._clone_volume(src, name, size_gib * GIB)
            elif src is not None and src.kind == "image":
                made = self._create_customized(name, src, size_gib * GIB, hostname, request_id)
                if isinstance(made, VolumeInfo):
                    return made
                vol = made
            else:
                vol = self.store.volumes.create(name, size_gib * GIB, src.id if src else None)
            origin: dict[str, Any] = {
                "image_id": image_ref,
                "snapshot_id": snapshot_id,
                "source_volid": source_volid,
            }
            if src is not None and image_ref is not None:  # an image or a snapshot, as Glance shows it
                origin["image_meta"] = self._image_meta(src)
            self._set_view(vol.id, description=description, metadata=meta, origin=origin)
        return self.show(vol.id)

    def _image_meta(self, image: Resource) -> dict[str, str]:
        rec = self.store.glance.show(image.id)
        return image_metadata(rec, readable(self.store.config.images, self.caller, rec.properties))

    def _clone_volume(self, src: Resource, name: str, size: int) -> Resource:
        """A volume's clone: a point-in-time snapshot of it (hidden at once), cloned (no data copied)."""
        snap = self.store.volumes.snapshot(src.id, f"clone-source-{new_id()}")
        try:
            return self.store.volumes.create(name, size, snap.id)
        finally:
            with self.write_then_remove() as (conn, files):
                files += self.hide(conn, snap.id)

    def _create_customized(
        self, name: str, src: Resource, size: int, hostname: str | None, request_id: str | None
    ) -> Resource | VolumeInfo:
        """Clone an image and run its no-secret tasks; when they fail the volume is gone and an
        ``error`` record (with the reason) answers in its place, with a user message."""
        from customization.params import InstanceParams
        from provider.services.customize import CustomizationFailed

        try:
            vol, _report = self.store.volumes.create_customized(
                name, src.id, InstanceParams(hostname=hostname), size=size
            )
        except CustomizationFailed as e:
            reason = str(e)
        else:
            return vol
        fid = new_id()
        with self.catalog.write(res_key(fid)) as conn:
            conn.execute(
                t.volume_failures.insert().values(
                    id=fid, owner=self.project(), name=name, size=size, reason=reason, created_at=now()
                )
            )
            self.store.volume_messages.record(conn, COPY_IMAGE_TO_VOLUME, reason, fid, request_id)
            return self._failure(self._failed(conn, fid))

    def _set_view(self, vid: str, **values: Any) -> None:
        row: dict[str, Any] = {}
        if values.get("description") is not None:
            row["description"] = values["description"]
        if values.get("metadata") is not None:
            row["meta"] = json.dumps(values["metadata"], sort_keys=True)
        if values.get("origin") is not None:
            row["origin"] = origin_json(values["origin"])
        if values.get("name") is not None:
            row["name"] = values["name"]
        if row:
            with self.catalog.write(res_key(vid)) as conn:
                conn.execute(update(t.volume_views).where(t.volume_views.c.resource_id == vid).values(**row))

    # ---- change ----------------------------------------------------------------------------------
    def update(
        self,
        vid: str,
        *,
        name: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> VolumeInfo:
        meta = check_metadata(metadata) if metadata is not None else None
        if description is not None:
            check_value("description", description)
        with self.catalog.read() as conn:
            vol = self.owned(conn, vid)
            if name is not None and name != vol.name:
                check_name(name, "volume name")
                self.store.volumes.check_name_free(conn, name, vol.owner)
        self._set_view(vol.id, name=name, description=description, metadata=meta)
        return self.show(vol.id)

    def set_metadata(self, vid: str, metadata: dict[str, Any], *, replace: bool = False) -> dict[str, str]:
        """Merge (or with ``replace`` set) the volume's metadata; return all of it."""
        meta = check_metadata(metadata)
        with self.catalog.read() as conn:
            vol = self.owned(conn, vid)
        assert vol.volume is not None
        merged = meta if replace else {**vol.volume.meta, **meta}
        self._set_view(vol.id, metadata=merged)
        return merged

    def delete_metadata(self, vid: str, key: str) -> None:
        with self.catalog.read() as conn:
            vol = self.owned(conn, vid)
        assert vol.volume is not None
        if key not in vol.volume.meta:
            raise NotFound(what="metadata key", ref=key)
        self._set_view(vol.id, metadata={k: v for k, v in vol.volume.meta.items() if k != key})

    def delete(self, vid: str) -> None:
        """Delete a volume (refused while attached; its snapshots stay), or a failed creation's record."""
        with self.catalog.write(res_key(vid)) as conn:
            if UUID_RE.match(vid or "") and self._failed(conn, vid) is not None:
                conn.execute(delete(t.volume_failures).where(t.volume_failures.c.id == vid))
                return
            vol = self.owned(conn, vid)
        self.store.volumes.delete(vol.id)

    def extend(self, vid: str, new_size_gib: Any) -> VolumeInfo:
        """Grow the volume (live through the data path when it is attached); never shrink it."""
        new_gib = check_size(new_size_gib)
        with self.catalog.read() as conn:
            vol = self.owned(conn, vid)
        if new_gib * GIB <= vol.size:
            raise InvalidInput(
                "new size %(new)d GiB must be larger than the volume's %(old)d GiB (volumes never shrink)",
                new=new_gib,
                old=gib(vol.size),
            )
        with self.store.quotas.reserve(gigabytes=new_gib - gib(vol.size)):
            self.store.volumes.grow(vol.id, new_gib * GIB)
        return self.show(vol.id)

    def upload_to_image(
        self,
        vid: str,
        image_name: str,
        *,
        force: bool = False,
        disk_format: str = "raw",
        container_format: str = "bare",
        visibility: str = "private",
    ) -> Resource:
        """The volume becomes an image at once: snapshot + registration, metadata only."""
        if disk_format != "raw" or container_format != "bare":
            raise InvalidInput(
                "images made from volumes are raw/bare (asked %(d)s/%(c)s)", d=disk_format, c=container_format
            )
        check_name(image_name, "image name")
        with self.catalog.read() as conn:
            vol = self.owned(conn, vid)
            if attachments_of(conn, vol.id) and not force:
                raise Conflict(reason=f"volume {vol.id} is attached: pass force to upload a copy of now")
        with self.store.quotas.reserve(images=1):
            snap = self.store.volumes.snapshot(vol.id, image_name)
            try:
                return self.store.images.set(snap.id, unset=[EXCLUDE_ALL_TASKS], visibility=visibility)
            except AtollError:
                self.store.images.delete(snap.id)
                raise
