"""Listings in one query: resources with all their views from one joined SELECT, access filtered in SQL,
image members aggregated in the same statement. No per-row load, no ORM object, no per-row validation:
the rows were validated when they were written."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, Table, exists, func, literal, or_, select

from provider.catalog import schema as t
from provider.services.model import ImageView, ObjectView, Resource, VolumeView

SEP = "\x1f"  # joins image members in one column (a name never contains a control character)
_R, _O, _I, _V = t.resources.c, t.object_views.c, t.image_views.c, t.volume_views.c


def _members(conn: Connection) -> ColumnElement[Any]:
    m = t.image_members.c
    agg = (
        func.group_concat(m.member, literal(SEP))
        if conn.dialect.name == "sqlite"
        else func.string_agg(m.member, literal(SEP))
    )
    return select(agg).where(m.resource_id == _R.id).scalar_subquery()


def _columns(conn: Connection) -> list[ColumnElement[Any]]:
    """The columns :func:`build_row` reads, in its order."""
    return [
        *(_R.id, _R.size, _R.mode, _R.backend, _R.locator, _R.disk_format, _R.parent, _R.sha256),
        *(_R.owner, _R.created_at, _R.updated_at),
        *(_O.container, _O.name, _O.content_type, _O.meta, _O.created_at),
        *(_I.name, _I.owner, _I.visibility, _I.status, _I.disk_format, _I.container_format, _I.properties),
        *(_I.created_at, _I.updated_at),
        *(_V.name, _V.status, _V.ganeti, _V.created_at),
        _members(conn),
    ]


def query(conn: Connection, view: Table, user: str, admin: bool) -> Select[Any]:
    """Every available resource that has ``view`` and that ``user`` may read, with all its views."""
    q = (
        select(*(c.label(f"c{i}") for i, c in enumerate(_columns(conn))))
        .select_from(t.resources)
        .join(view, view.c.resource_id == _R.id)  # the listed view: inner join, the others outer
        .where(_R.state == "available")
    )
    for other in (t.object_views, t.image_views, t.volume_views):
        if other is not view:
            q = q.outerjoin(other, other.c.resource_id == _R.id)
    if not admin:
        member = exists().where(t.image_members.c.resource_id == _R.id, t.image_members.c.member == user)
        q = q.where(or_(_R.owner == user, _I.visibility == "public", member))
    return q


def _loads(text: str | None) -> Any:
    return json.loads(text) if text and text != "{}" else {}


def build_row(r: Sequence[Any]) -> Resource:
    """A Resource from one row of :func:`query` (positional: the fastest way through 10,000 rows)."""
    obj = ObjectView(r[11], r[12], r[13], _loads(r[14]), r[15]) if r[11] is not None else None
    img = None
    if r[16] is not None:
        members = tuple(sorted(r[29].split(SEP))) if r[29] else ()
        img = ImageView(r[16], r[17], r[18], r[19], r[20], r[21], _loads(r[22]), r[23], r[24], members)
    vol = VolumeView(r[25], r[26], _loads(r[27]), r[28]) if r[25] is not None else None
    return Resource(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], "available", r[7], r[8], r[9], r[10], obj, img, vol
    )


def list_resources(
    conn: Connection,
    view: Table,
    user: str,
    admin: bool,
    order: Sequence[ColumnElement[Any]],
    where: ColumnElement[bool] | None = None,
) -> list[Resource]:
    q = query(conn, view, user, admin).order_by(*order)
    if where is not None:
        q = q.where(where)
    return [build_row(row) for row in conn.execute(q).tuples()]
