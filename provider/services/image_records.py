"""The Glance view of images: one record per image view, read in bulk (one query for the rows, one for
the tags, one for the members of a whole page), and who may see what (Glance's visibility rules).

Visibility is stored in ``image_views.visibility`` (private|shared|public); ``community`` is stored as
``public`` plus ``glance.community`` so the CLI, which knows no community images, treats them as readable
by everyone (which they are) while the API lists them only when asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Connection,
    Select,
    String,
    and_,
    bindparam,
    cast,
    false,
    func,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
)

from provider.catalog import schema as t
from provider.services.base import Caller
from provider.services.catalog_listing import decode_all
from provider.utils.props import is_snapshot

QUEUED_OP = "image-queued"
GLANCE_DEFAULTS: dict[str, Any] = {
    "min_disk": 0,
    "min_ram": 0,
    "protected": False,
    "os_hidden": False,
    "community": False,
    "checksum": None,
    "os_hash_algo": None,
    "os_hash_value": None,
    "virtual_size": None,
}


@dataclass(slots=True)
class ImageRecord:
    id: str
    name: str
    owner: str
    visibility: str  # as stored: private|shared|public
    status: str
    disk_format: str
    container_format: str
    properties: dict[str, str]
    glance: dict[str, Any]
    size: int | None
    parent: str | None
    created_at: str
    updated_at: str
    queued: bool
    has_object: bool
    tags: list[str] = field(default_factory=list)
    members: dict[str, str] = field(default_factory=dict)  # project -> status

    @property
    def api_visibility(self) -> str:
        return "community" if self.glance.get("community") else self.visibility

    @property
    def is_snapshot(self) -> bool:
        return is_snapshot(self.properties)


def base_query() -> Select[Any]:
    """Image views of available resources, and queued images (no data yet)."""
    r = t.resources
    return (
        select(
            t.image_views,
            r.c.size,
            r.c.parent,
            r.c.state,
            (r.c.op == QUEUED_OP).label("queued"),
            t.object_views.c.resource_id.label("object_id"),
        )
        .join(r, r.c.id == t.image_views.c.resource_id)
        .outerjoin(t.object_views, t.object_views.c.resource_id == t.image_views.c.resource_id)
        .where(or_(r.c.state == "available", and_(r.c.state == "pending", r.c.op == QUEUED_OP)))
    )


def visible_to(caller: Caller, member_status: str | None = "accepted") -> ColumnElement[bool]:
    """What ``caller`` may read: own, public, community, and shared with its project (any status)."""
    if caller.admin:
        return true()
    v = t.image_views
    shared = select(t.image_members.c.resource_id).where(t.image_members.c.member == caller.name)
    if member_status not in (None, "all"):
        shared = shared.where(t.image_members.c.status == member_status)
    return or_(v.c.owner == caller.name, v.c.visibility == "public", v.c.resource_id.in_(shared))


def listed_by_default(caller: Caller) -> ColumnElement[bool]:
    """Glance's default list: own images, public (not community) ones, accepted shares."""
    v = t.image_views
    community = v.c.glance.like('%"community": true%')
    shared = select(t.image_members.c.resource_id).where(
        t.image_members.c.member == caller.name, t.image_members.c.status == "accepted"
    )
    if caller.admin:
        return or_(~community, v.c.owner == caller.name)
    return or_(
        v.c.owner == caller.name,
        and_(v.c.visibility == "public", ~community),
        v.c.resource_id.in_(shared),
    )


def visibility_filter(caller: Caller, visibility: str, member_status: str) -> ColumnElement[bool]:
    v = t.image_views
    community = v.c.glance.like('%"community": true%')
    if visibility == "community":
        return and_(v.c.visibility == "public", community)
    if visibility == "public":
        return and_(v.c.visibility == "public", ~community)
    if visibility == "private":
        return and_(v.c.visibility == "private", true() if caller.admin else v.c.owner == caller.name)
    if visibility == "shared":
        mine = v.c.owner == caller.name
        shared = select(t.image_members.c.resource_id).where(t.image_members.c.member == caller.name)
        if member_status != "all":
            shared = shared.where(t.image_members.c.status == member_status)
        return and_(v.c.visibility == "shared", or_(mine, v.c.resource_id.in_(shared)))
    if visibility == "all":
        return true()
    return false()


def _page(column: Any, dialect: str) -> ColumnElement[bool]:
    """``column`` is one of the page's ids, passed as one JSON array: an expanding IN of 1,000 ids
    cost more to render than the query took to run."""
    ids = bindparam("ids", type_=String)
    if dialect == "postgresql":  # imported here: a SQLite catalog never loads the PostgreSQL dialect
        from sqlalchemy.dialects.postgresql import JSONB

        return column.in_(select(func.jsonb_array_elements_text(cast(ids, JSONB))))
    return column.in_(select(literal_column("value")).select_from(func.json_each(ids)))


def _extras(dialect: str) -> CompoundSelect[Any]:
    """The tags (member NULL) and members (tag NULL) of a page of images, in one query; tags sorted."""
    tags, members = t.image_tags, t.image_members
    return union_all(
        select(tags.c.resource_id, tags.c.tag, null(), null()).where(_page(tags.c.resource_id, dialect)),
        select(members.c.resource_id, null(), members.c.member, members.c.status).where(
            _page(members.c.resource_id, dialect)
        ),
    ).order_by(literal_column("2"))


# Built once per dialect: composing SQLAlchemy expressions costs more than running these queries.
_EXTRAS: dict[str, CompoundSelect[Any]] = {}

_COLUMNS = (
    *("resource_id", "name", "owner", "visibility", "status", "disk_format", "container_format"),
    *("properties", "created_at", "updated_at", "glance", "size", "parent", "state", "queued", "object_id"),
)
if tuple(c.key for c in base_query().selected_columns) != _COLUMNS:  # pragma: no cover
    raise ImportError("image_records: base_query() no longer selects the columns _record unpacks")


def records(conn: Connection, rows: Iterable[Any]) -> list[ImageRecord]:
    """Records for ``rows`` of :func:`base_query`, with their tags and members (two more queries).
    The JSON columns of the whole page are decoded in two parser calls."""
    rows = list(rows)
    props = decode_all([row[7] for row in rows])
    glance = decode_all([row[10] for row in rows])
    out = [_record(row, p, g) for row, p, g in zip(rows, props, glance, strict=True)]
    if not out:
        return out
    by_id = {r.id: r for r in out}
    page = {"ids": json.dumps(list(by_id))}
    dialect = conn.dialect.name
    extras = _EXTRAS.get(dialect)  # a clause has no truth value: compare with None
    if extras is None:
        extras = _EXTRAS[dialect] = _extras(dialect)
    for rid, tag, member, status in conn.execute(extras, page):
        if tag is not None:
            by_id[rid].tags.append(tag)
        else:
            by_id[rid].members[member] = status
    return out


def _record(row: Any, properties: dict[str, str], glance: dict[str, Any]) -> ImageRecord:
    rid, name, owner, visibility, status, disk_format, container_format, _, created, updated = row[:10]
    size, parent, state, queued_op, object_id = row[11:]
    queued = bool(queued_op) and state == "pending"
    return ImageRecord(
        id=rid,
        name=name,
        owner=owner,
        visibility=visibility,
        status=status,
        disk_format=disk_format,
        container_format=container_format,
        properties=properties,
        glance={**GLANCE_DEFAULTS, **glance},
        size=None if queued else size,
        parent=parent,
        created_at=created,
        updated_at=updated,
        queued=queued,
        has_object=object_id is not None,
    )


def load_record(conn: Connection, image_id: str) -> ImageRecord | None:
    rows = conn.execute(_ONE, {"rid": image_id}).all()
    found = records(conn, rows)
    return found[0] if found else None


_ONE = base_query().where(t.image_views.c.resource_id == bindparam("rid"))


def lineage(conn: Connection, rec: ImageRecord) -> dict[str, str]:
    """For a snapshot: the image its volume came from (``base_image_ref``) and, for a Ganeti
    instance's disk, the instance (``instance_uuid``: Ganeti's instance name), walking up the parents."""
    out: dict[str, str] = {}
    cur, seen = rec.parent, {rec.id}
    while cur is not None and cur not in seen:
        seen.add(cur)
        vol = conn.execute(select(t.volume_views.c.ganeti).where(t.volume_views.c.resource_id == cur)).first()
        if vol is not None and "instance_uuid" not in out:
            ganeti = json.loads(vol.ganeti or "{}")
            instance = ganeti.get("instance_uuid") or ganeti.get("instance")
            if instance:
                out["instance_uuid"] = str(instance)
        img = conn.execute(
            select(t.image_views.c.properties).where(t.image_views.c.resource_id == cur)
        ).first()
        if img is not None and not is_snapshot(json.loads(img.properties or "{}")):
            out["base_image_ref"] = cur
            break
        cur = conn.execute(select(t.resources.c.parent).where(t.resources.c.id == cur)).scalar()
    return out
