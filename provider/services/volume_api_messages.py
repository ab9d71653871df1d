"""Volume API user messages (Cinder v3 ``/messages``, microversion 3.3+): why an asynchronous request of a
project failed, such as a volume whose customization failed. A message names Cinder's event (resource,
action, detail), says what happened in one line, and is kept for ``KEEP_DAYS`` or until deleted."""

from __future__ import annotations

import builtins
import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select

from provider.catalog import schema as t
from provider.errors import InvalidInput, NotFound
from provider.services.base import Service
from provider.utils.host import new_id, now

KEEP_DAYS = 30  # Cinder's message_ttl
RESOURCE_VOLUME = "VOLUME"
# Cinder's action ids, and its detail id for an error it has no name for (ours says what it was).
COPY_IMAGE_TO_VOLUME = ("005", "copy image to volume")
UNKNOWN_ERROR = "001"
FILTERS = ("resource_uuid", "resource_type", "event_id", "request_id", "message_level", "project_id")


@dataclass(frozen=True)
class MessageInfo:
    id: str
    owner: str
    event_id: str
    user_message: str
    message_level: str
    resource_type: str
    resource_uuid: str | None
    request_id: str | None
    created_at: str
    guaranteed_until: str

    @classmethod
    def from_row(cls, row: Any) -> MessageInfo:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class VolumeMessageService(Service):
    def project(self) -> str:
        return self.store.quotas.project()

    def record(
        self,
        conn: Connection,
        action: tuple[str, str],
        reason: str,
        resource_uuid: str,
        request_id: str | None = None,
    ) -> str:
        """Leave the project a message (in the caller's transaction ``conn``); expired ones go."""
        conn.execute(delete(t.volume_messages).where(t.volume_messages.c.guaranteed_until < now()))
        mid, created = new_id(), dt.datetime.now(dt.UTC)
        conn.execute(
            t.volume_messages.insert().values(
                id=mid,
                owner=self.project(),
                event_id=f"VOLUME_{RESOURCE_VOLUME}_{action[0]}_{UNKNOWN_ERROR}",
                user_message=f"{action[1]}: {reason}",
                message_level="ERROR",
                resource_type=RESOURCE_VOLUME,
                resource_uuid=resource_uuid,
                request_id=request_id,
                created_at=_stamp(created),
                guaranteed_until=_stamp(created + dt.timedelta(days=KEEP_DAYS)),
            )
        )
        return mid

    def list(
        self,
        filters: dict[str, str] | None = None,
        *,
        sort_dir: str = "desc",
        limit: int | None = None,
        marker: str | None = None,
        offset: int = 0,
    ) -> builtins.list[MessageInfo]:
        """The project's messages (an admin's: every project's, or ``project_id``'s), newest first unless
        ``sort_dir=asc``; ``filters`` match fields exactly; ``marker`` is the id of the last message of
        the previous page."""
        if sort_dir not in ("asc", "desc"):
            raise InvalidInput("sort direction must be asc or desc, not %(d)r", d=sort_dir)
        if (limit is not None and limit < 0) or offset < 0:
            raise InvalidInput("limit and offset must not be negative")
        with self.catalog.read() as conn:
            rows = conn.execute(self._visible(filters or {})).all()
        found = sorted((MessageInfo.from_row(r) for r in rows), key=lambda m: (m.created_at, m.id))
        if sort_dir == "desc":
            found.reverse()
        if marker is not None:
            ids = [m.id for m in found]
            if marker not in ids:
                raise InvalidInput("marker %(m)r is not a message of this listing", m=marker)
            found = found[ids.index(marker) + 1 :]
        found = found[offset:]
        return found if limit is None else found[:limit]

    def show(self, mid: str) -> MessageInfo:
        with self.catalog.read() as conn:
            row = conn.execute(self._visible({}).where(t.volume_messages.c.id == mid)).first()
        if row is None:
            raise NotFound(what="message", ref=mid)
        return MessageInfo.from_row(row)

    def delete(self, mid: str) -> None:
        self.show(mid)  # not found when it is not the caller's to see
        with self.catalog.write() as conn:
            conn.execute(delete(t.volume_messages).where(t.volume_messages.c.id == mid))

    def _visible(self, filters: dict[str, str]) -> Any:
        m = t.volume_messages.c
        q = select(t.volume_messages).where(m.guaranteed_until >= now())
        if not self.caller.admin:
            q = q.where(m.owner == self.project())
        for key, value in filters.items():
            if key not in FILTERS:
                raise InvalidInput("messages cannot be filtered by %(k)r", k=key)
            q = q.where(m["owner" if key == "project_id" else key] == value)
        return q
