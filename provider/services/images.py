"""Images (Glance-like): register an object, properties (some protected), visibility and members."""

from __future__ import annotations

import builtins
import json
import logging
from typing import Any

from sqlalchemy import Connection, delete, select, update

from customization.properties import validate
from provider.catalog import schema as t
from provider.errors import AlreadyExists, Conflict, InvalidInput, PermissionDenied
from provider.imaging.inspect import STORED_AS_IS, detect, inspect
from provider.model import Resource
from provider.services import protections
from provider.services.base import Service, name_key
from provider.utils.host import now
from provider.utils.names import check_key, check_name, check_value
from provider.utils.props import EXCLUDE_ALL_TASKS

LOG = logging.getLogger(__name__)

VISIBILITIES = ("private", "shared", "public")
DISK_FORMATS = STORED_AS_IS  # register takes data as it is: anything else goes through `image import`
CONTAINER_FORMATS = ("bare",)


class ImageService(Service):
    def _validate_properties(
        self, props: dict[str, str], *, old: dict[str, str] | None = None
    ) -> dict[str, str]:
        clean: dict[str, str] = {}
        for key, value in props.items():
            check_key(key, "property")
            clean[key.upper()] = check_value(key, value)
        before = old or {}
        protections.check_changes(self.store.config.images, self.caller, before, {**before, **clean})
        validate(clean)  # snf-image's schema, strict: PropertyError (an InvalidInput) on a bad value
        return clean

    def register(
        self,
        ref: str,
        name: str,
        *,
        properties: dict[str, str] | None = None,
        public: bool = False,
        disk_format: str = "raw",
        container_format: str = "bare",
    ) -> Resource:
        """Make the object ``ref`` an image: metadata only, the data is not touched."""
        check_name(name, "image name")
        if disk_format not in DISK_FORMATS:
            raise InvalidInput(
                "disk format %(f)r cannot be registered: objects are raw disks (atoll image import converts "
                "qcow2, vmdk, vhdx, vpc and vdi)",
                f=disk_format,
            )
        if container_format not in CONTAINER_FORMATS:
            raise InvalidInput("container format %(f)r is not supported (use bare)", f=container_format)
        props = self._validate_properties(properties or {})
        with self.write_one(ref, "object", name_key("image", name)) as conn:
            res = self.resolve(conn, ref, "object")
            self.check_owner(res)
            if res.mode != "ro":
                raise Conflict(reason=f"{res.name!r} is a volume: snapshot it, then register the snapshot")
            if res.image is not None:
                if res.image.name == name and res.image.properties == props:
                    return res  # idempotent
                raise AlreadyExists(what="image registration of object", name=res.name)
            self.check_name_free(conn, name, res.owner)
            if res.disk_format == "raw":
                self.check_raw(res, disk_format)
            stamp = now()
            conn.execute(
                t.image_views.insert().values(
                    resource_id=res.id,
                    name=name,
                    owner=res.owner,
                    visibility="public" if public else "private",
                    status="active",
                    disk_format=disk_format,
                    container_format=container_format,
                    properties=json.dumps(props, sort_keys=True),
                    created_at=stamp,
                    updated_at=stamp,
                )
            )
            return self.load(conn, res.id)

    def check_raw(self, res: Resource, disk_format: str = "raw") -> None:
        """Run the format inspector on a raw object: a raw disk that is really a qcow2 (or vmdk, …) could
        name a host file as its backing file once something probes it."""
        backend = self.store.backend(res.backend)

        def read(offset: int, length: int) -> bytes:
            return backend.read(res.locator, offset, length)

        try:
            fmt = detect(read, res.size)
            if fmt not in STORED_AS_IS:
                raise InvalidInput(
                    "object %(name)s holds a %(fmt)s image, not a raw disk: import it instead (atoll image "
                    "import NAME --from FILE converts it to raw)",
                    name=res.name,
                    fmt=fmt,
                )
            limit = self.store.config.imports.max_virtual_size
            inspect(read, res.size, declared=disk_format, max_virtual_size=limit)
        except OSError:
            return

    def check_name_free(self, conn: Connection, name: str, owner: str, exclude: str | None = None) -> None:
        """:raises AlreadyExists: another image (or snapshot) of project ``owner`` than ``exclude`` is
        called ``name`` (names are per project: other projects' images never block one, nor show)."""
        v = t.image_views.c
        q = select(v.resource_id).where(v.name == name, v.owner == owner)
        row = conn.execute(q).first()
        if row is not None and row[0] != exclude:
            raise AlreadyExists(what="image", name=name)

    def _image(self, conn: Connection, ref: str) -> Resource:
        res = self.resolve(conn, ref, "image")
        self.check_read(conn, res)
        if res.image is None:
            raise InvalidInput("%(ref)r is a %(kind)s, not an image or snapshot", ref=ref, kind=res.kind)
        return res

    def unregister(self, ref: str) -> Resource:
        """Drop the image metadata: the resource is a plain object again, its data untouched."""
        with self.write_one(ref, "image") as conn:
            res = self._image(conn, ref)
            self.check_owner(res)
            props = res.image.properties if res.image else {}
            protected = [
                k for k in props if not protections.may(self.store.config.images, self.caller, k, "delete")
            ]
            if protected:
                raise PermissionDenied(
                    reason=f"image carries protected properties ({', '.join(protected)}): only an admin "
                    "may unregister it"
                )
            conn.execute(delete(t.image_members).where(t.image_members.c.resource_id == res.id))
            conn.execute(delete(t.image_views).where(t.image_views.c.resource_id == res.id))
            return self.load(conn, res.id)

    def set(
        self,
        ref: str,
        *,
        set_props: dict[str, str] | None = None,
        unset: list[str] | None = None,
        name: str | None = None,
        visibility: str | None = None,
    ) -> Resource:
        """Change properties, name or visibility; setting/unsetting EXCLUDE_ALL_TASKS converts
        image ↔ snapshot."""
        with self.write_one(ref, "image", *([name_key("image", name)] if name else [])) as conn:
            res = self._image(conn, ref)
            self.check_owner(res)
            assert res.image is not None
            props = dict(res.image.properties)
            for key in unset or []:
                key = key.upper()
                protections.check(self.store.config.images, self.caller, key, "delete")
                if key not in props:
                    raise InvalidInput("image %(name)s has no property %(key)s", name=res.image.name, key=key)
                del props[key]
            props.update(self._validate_properties(set_props or {}, old=props))
            values: dict[str, Any] = {"properties": json.dumps(props, sort_keys=True), "updated_at": now()}
            if name is not None and name != res.image.name:
                check_name(name, "image name")
                self.check_name_free(conn, name, res.owner, exclude=res.id)
                values["name"] = name
            if visibility is not None:
                if visibility not in VISIBILITIES:
                    raise InvalidInput(
                        "visibility %(v)r is not one of %(all)s", v=visibility, all=", ".join(VISIBILITIES)
                    )
                values["visibility"] = visibility
            conn.execute(update(t.image_views).where(t.image_views.c.resource_id == res.id).values(**values))
            return self.load(conn, res.id)

    def to_snapshot(self, ref: str) -> Resource:
        return self.set(ref, set_props={EXCLUDE_ALL_TASKS: "yes"})

    def to_image(self, ref: str) -> Resource:
        return self.set(ref, unset=[EXCLUDE_ALL_TASKS])

    def add_member(self, ref: str, member: str) -> Resource:
        check_name(member, "user")
        with self.write_one(ref, "image") as conn:
            res = self._image(conn, ref)
            self.check_owner(res)
            if member not in (res.image.members if res.image else ()):
                conn.execute(t.image_members.insert().values(resource_id=res.id, member=member))
            if res.image and res.image.visibility == "private":
                conn.execute(
                    update(t.image_views)
                    .where(t.image_views.c.resource_id == res.id)
                    .values(visibility="shared")
                )
            return self.load(conn, res.id)

    def remove_member(self, ref: str, member: str) -> Resource:
        with self.write_one(ref, "image") as conn:
            res = self._image(conn, ref)
            self.check_owner(res)
            conn.execute(
                delete(t.image_members).where(
                    t.image_members.c.resource_id == res.id, t.image_members.c.member == member
                )
            )
            return self.load(conn, res.id)

    def list(self, *, include_snapshots: bool = False) -> builtins.list[Resource]:
        found = self.list_view(t.image_views, t.image_views.c.name)
        return [r for r in found if include_snapshots or r.kind == "image"]

    def show(self, ref: str) -> Resource:
        with self.catalog.read() as conn:
            return self._image(conn, ref)

    def delete(self, ref: str) -> None:
        """Unregister and delete the object in one step (data kept while clones need it)."""
        with self.write_then_remove() as (conn, files):
            res = self._image(conn, ref)
            self.check_owner(res)
            self.store.datapath.refuse_if_attached(res, "delete it")
            files += self.hide(conn, res.id)

    def inherited_properties(self, conn: Connection, res: Resource) -> dict[str, str]:
        """The image properties that apply to ``res``: its own, else the nearest ancestor's."""
        seen = set()
        cur: Resource | None = res
        while cur is not None and cur.id not in seen:
            seen.add(cur.id)
            if cur.image is not None:
                return dict(cur.image.properties)
            if cur.parent is None:
                return {}
            cur = self.load(conn, cur.parent, states=("available", "deleted"))
        return {}
