"""Image members (Glance v2): the owner shares a ``shared`` image with other projects; each member
accepts or rejects it (``pending`` until then). Only accepted shares appear in a member's default
list, but a member can always read the image it was offered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update

from provider.catalog import schema as t
from provider.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied
from provider.services.base import Service
from provider.services.image_records import ImageRecord
from provider.utils.host import now

STATUSES = ("pending", "accepted", "rejected")


@dataclass(frozen=True)
class Member:
    image_id: str
    member_id: str
    status: str
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "member_id": self.member_id,
            "status": self.status,
            "created_at": self.created_at[:19] + "Z",
            "updated_at": self.updated_at[:19] + "Z",
            "schema": "/v2/schemas/member",
        }


class MembersService(Service):
    def _image(self, conn: Connection, image_id: str) -> ImageRecord:
        return self.store.glance.record(conn, image_id)

    def _is_owner(self, rec: ImageRecord) -> bool:
        return self.caller.admin or rec.owner == self.caller.name

    def _rows(self, conn: Connection, image_id: str, member: str | None = None) -> list[Member]:
        q = select(t.image_members).where(t.image_members.c.resource_id == image_id)
        if member is not None:
            q = q.where(t.image_members.c.member == member)
        return [
            Member(r.resource_id, r.member, r.status, r.created_at, r.updated_at)
            for r in conn.execute(q.order_by(t.image_members.c.member))
        ]

    def list(self, image_id: str) -> list[Member]:
        with self.catalog.read() as conn:
            rec = self._image(conn, image_id)
            if self._is_owner(rec):
                return self._rows(conn, image_id)
            return self._rows(conn, image_id, self.caller.name)

    def show(self, image_id: str, member: str) -> Member:
        with self.catalog.read() as conn:
            rec = self._image(conn, image_id)
            if not self._is_owner(rec) and member != self.caller.name:
                raise NotFound(what="member", ref=member)
            found = self._rows(conn, image_id, member)
        if not found:
            raise NotFound(what="member", ref=member)
        return found[0]

    def add(self, image_id: str, member: str) -> Member:
        with self.write_one(image_id, "image") as conn:
            rec = self._image(conn, image_id)
            if not self._is_owner(rec):
                raise PermissionDenied(reason="only the image's owner may add members")
            if rec.api_visibility != "shared":
                raise PermissionDenied(
                    reason=f"image {image_id} is {rec.api_visibility}: only shared images have members"
                )
            if not isinstance(member, str) or not member:
                raise InvalidInput("member must be a project id")
            if self._rows(conn, image_id, member):
                raise AlreadyExists(what="member", name=member)
            stamp = now()
            conn.execute(
                t.image_members.insert().values(
                    resource_id=image_id, member=member, status="pending", created_at=stamp, updated_at=stamp
                )
            )
            return self._rows(conn, image_id, member)[0]

    def set_status(self, image_id: str, member: str, status: str) -> Member:
        if status not in STATUSES:
            raise InvalidInput("status %(s)r is not one of %(all)s", s=status, all=", ".join(STATUSES))
        with self.write_one(image_id, "image") as conn:
            self._image(conn, image_id)
            if member != self.caller.name:
                raise PermissionDenied(reason="only the member itself may accept or reject an image")
            if not self._rows(conn, image_id, member):
                raise NotFound(what="member", ref=member)
            conn.execute(
                update(t.image_members)
                .where(t.image_members.c.resource_id == image_id, t.image_members.c.member == member)
                .values(status=status, updated_at=now())
            )
            return self._rows(conn, image_id, member)[0]

    def remove(self, image_id: str, member: str) -> None:
        with self.write_one(image_id, "image") as conn:
            rec = self._image(conn, image_id)
            if not self._is_owner(rec):
                raise PermissionDenied(reason="only the image's owner may remove members")
            gone = conn.execute(
                delete(t.image_members).where(
                    t.image_members.c.resource_id == image_id, t.image_members.c.member == member
                )
            )
            if gone.rowcount == 0:
                raise NotFound(what="member", ref=member)
