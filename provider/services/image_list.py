"""Listing images with Glance's filters, sorting and marker paging, in one query per page."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, or_, select

from provider.catalog import schema as t
from provider.errors import InvalidInput, NotFound
from provider.services.base import Caller
from provider.services.image_records import (
    ImageRecord,
    base_query,
    listed_by_default,
    records,
    visibility_filter,
)

SORT_KEYS = {
    "name": t.image_views.c.name,
    "status": t.image_views.c.status,
    "disk_format": t.image_views.c.disk_format,
    "container_format": t.image_views.c.container_format,
    "size": t.resources.c.size,
    "id": t.image_views.c.resource_id,
    "created_at": t.image_views.c.created_at,
    "updated_at": t.image_views.c.updated_at,
    "visibility": t.image_views.c.visibility,
    "owner": t.image_views.c.owner,
}
EQUAL_FILTERS = {
    "name": t.image_views.c.name,
    "status": t.image_views.c.status,
    "owner": t.image_views.c.owner,
    "disk_format": t.image_views.c.disk_format,
    "container_format": t.image_views.c.container_format,
    "id": t.image_views.c.resource_id,
}
MAX_LIMIT = 1000


@dataclass
class ImageQuery:
    visibility: str | None = None
    member_status: str = "accepted"
    equal: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)
    size_min: int | None = None
    size_max: int | None = None
    sort: list[tuple[str, str]] = field(default_factory=lambda: [("created_at", "desc")])
    limit: int = 25
    marker: str | None = None

    def check(self) -> None:
        for key, direction in self.sort:
            if key not in SORT_KEYS:
                raise InvalidInput(
                    "cannot sort by %(key)r: use one of %(all)s", key=key, all=", ".join(SORT_KEYS)
                )
            if direction not in ("asc", "desc"):
                raise InvalidInput("sort direction %(d)r is not asc or desc", d=direction)
        if not 0 <= self.limit <= MAX_LIMIT:
            raise InvalidInput("limit must be between 0 and %(max)d", max=MAX_LIMIT)
        if self.member_status not in ("accepted", "pending", "rejected", "all"):
            raise InvalidInput(
                "member_status %(s)r is not accepted, pending, rejected or all", s=self.member_status
            )


def _where(q: ImageQuery, caller: Caller) -> list[ColumnElement[bool]]:
    v = t.image_views
    if q.visibility is None:
        where = [listed_by_default(caller)]
    else:
        where = [visibility_filter(caller, q.visibility, q.member_status)]
    for key, value in q.equal.items():
        where.append(EQUAL_FILTERS[key] == value)
    for tag in q.tags:
        where.append(v.c.resource_id.in_(select(t.image_tags.c.resource_id).where(t.image_tags.c.tag == tag)))
    if q.size_min is not None:
        where.append(t.resources.c.size >= q.size_min)
    if q.size_max is not None:
        where.append(t.resources.c.size <= q.size_max)
    return where


def _after_marker(conn: Connection, q: ImageQuery, marker: Any) -> ColumnElement[bool]:
    """Rows that come after ``marker`` in the sort order (keys compared lexicographically, id last)."""
    keys = [*q.sort, ("id", q.sort[-1][1])]
    values = {k: marker._mapping["resource_id" if k == "id" else k] for k, _ in keys if k != "size"}
    values["size"] = marker._mapping["size"]
    clauses = []
    for i, (key, direction) in enumerate(keys):
        col = SORT_KEYS[key]
        prefix = [SORT_KEYS[k] == values[k] for k, _ in keys[:i]]
        step = col > values[key] if direction == "asc" else col < values[key]
        clauses.append(and_(*prefix, step))
    return or_(*clauses)


def query_images(conn: Connection, caller: Caller, q: ImageQuery) -> tuple[list[ImageRecord], bool]:
    """One page of images ``caller`` may list; True when more follow."""
    q.check()
    stmt = base_query().where(*_where(q, caller))
    if q.marker is not None:
        marker = conn.execute(base_query().where(t.image_views.c.resource_id == q.marker)).first()
        if marker is None:
            raise NotFound(what="marker image", ref=q.marker)
        stmt = stmt.where(_after_marker(conn, q, marker))
    order = [SORT_KEYS[k].asc() if d == "asc" else SORT_KEYS[k].desc() for k, d in q.sort]
    last_dir = q.sort[-1][1]
    order.append(
        t.image_views.c.resource_id.asc() if last_dir == "asc" else t.image_views.c.resource_id.desc()
    )
    stmt = stmt.order_by(*order)
    if q.properties:
        found = [r for r in records(conn, conn.execute(stmt).all()) if _props_match(r, q.properties)]
        return found[: q.limit], len(found) > q.limit
    rows = conn.execute(stmt.limit(q.limit + 1)).all()
    return records(conn, rows[: q.limit]), len(rows) > q.limit


def _props_match(rec: ImageRecord, props: dict[str, str]) -> bool:
    return all(rec.properties.get(k) == v for k, v in props.items())
