"""One id across services: an object becomes an image under its own id, as a Synnefo image id is its Pithos
object's id. Glance lets a client choose a new image's id; when that id names an object of the caller's
project, the object is registered at once (``active``, its size, no upload: metadata only). A location
``swift://CONTAINER/OBJECT`` is accepted on an image only when it names that same object."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from provider.catalog import schema as t
from provider.errors import AlreadyExists, InvalidInput, NotFound
from provider.services.base import Service

SWIFT_SCHEME = "swift://"
GLANCE_EXTRAS = ("min_disk", "min_ram", "protected", "os_hidden")


class ImageAdoption(Service):
    def adopt(self, rid: str, fields: dict[str, Any], properties: dict[str, str], tags: list[str]) -> bool:
        """Register the caller's object ``rid`` as an image named ``fields['name']``; False when no
        resource has that id (the caller then makes a new, queued image with it)."""
        with self.catalog.read() as conn:
            if conn.execute(select(t.resources.c.id).where(t.resources.c.id == rid)).first() is None:
                return False
            try:
                res = self.load(conn, rid)
            except NotFound:
                res = None
        mine = res is not None and (self.caller.admin or res.owner == self.caller.name)
        if res is None or not mine or res.object is None or res.image is not None or res.mode != "ro":
            raise AlreadyExists(what="image", name=rid)  # Glance answers 409 for an id in use
        name = fields.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInput("an image made from object %(obj)s needs a name", obj=res.object.path)
        with self.store.quotas.reserve(images=1):
            self.store.images.register(
                rid,
                name,
                properties=properties,
                disk_format=fields.get("disk_format") or "raw",
                container_format=fields.get("container_format") or "bare",
            )
        changes = {k: fields[k] for k in GLANCE_EXTRAS if k in fields}
        changes["visibility"] = fields.get("visibility") or "shared"  # Glance's default
        self.store.glance.update(rid, changes, {}, [], tags)
        return True

    def check_location(self, image_id: str, location: Any) -> None:
        """Accept a location only when it is ``swift://CONTAINER/OBJECT`` naming the image's own object
        (the data is already there: nothing moves); refuse anything else with a clear error."""
        url = location.get("url") if isinstance(location, dict) else None
        if not isinstance(url, str) or not url.startswith(SWIFT_SCHEME):
            raise InvalidInput(
                "a location must be swift://CONTAINER/OBJECT naming the image's own object (Atoll keeps "
                "image data in its store; it does not point at outside data)"
            )
        container, _, name = url.removeprefix(SWIFT_SCHEME).partition("/")
        if not container or not name:
            raise InvalidInput("location %(url)r is not swift://CONTAINER/OBJECT", url=url)
        self.store.glance.show(image_id)  # the image must be the caller's to see
        try:
            obj = self.store.containers.open_object(self.caller.name, container, name)
        except NotFound:
            raise InvalidInput("location %(url)r names no object of this project", url=url) from None
        if obj.id != image_id:
            raise InvalidInput(
                "location %(url)r names object %(obj)s, not this image's own object %(img)s: one resource "
                "keeps one id",
                url=url,
                obj=obj.id,
                img=image_id,
            )
