"""Names are per project: which resources a name (``container/name`` or an image/volume name) means.

Two projects may each have an image ``debian``, a volume ``db`` or an object ``disks/root.img`` (Swift's
names are per account, Glance's and Cinder's are not unique at all); inside one project a name is unique
per view. A name resolves to the caller's own resource of that name first; otherwise to the one
resource of another project that the caller may read (a public or shared image; anything, for an admin).
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Connection, select

from provider.catalog import schema as t

Candidate = tuple[str, str, str]  # (resource id, view label, owning project)


def named(conn: Connection, ref: str) -> Iterator[Candidate]:
    """Every available resource whose object path or image/volume name is ``ref``, in any project."""
    available = t.resources.c.state == "available"
    if "/" in ref:
        container, _, name = ref.partition("/")
        q = (
            select(t.object_views.c.resource_id, t.resources.c.owner)
            .join(t.resources, t.resources.c.id == t.object_views.c.resource_id)
            .where(t.object_views.c.container == container, t.object_views.c.name == name, available)
        )
        for rid, owner in conn.execute(q):
            yield rid, "object", owner
    for view, label in ((t.image_views, "image"), (t.volume_views, "volume")):
        q = (
            select(view.c.resource_id, t.resources.c.owner)
            .join(t.resources, t.resources.c.id == view.c.resource_id)
            .where(view.c.name == ref, available)
        )
        for rid, owner in conn.execute(q):
            yield rid, label, owner


def choices(found: dict[str, Candidate]) -> str:
    """How an ambiguous name's resources are listed in the error."""
    return ", ".join(f"{label} {rid} of project {owner}" for rid, label, owner in found.values())


def object_id(
    conn: Connection, container: str, name: str, owner: str, states: tuple[str, ...] = ("available",)
) -> str | None:
    """The id of project ``owner``'s object ``container/name`` in one of ``states``, if any."""
    return conn.execute(
        select(t.object_views.c.resource_id)
        .join(t.resources, t.resources.c.id == t.object_views.c.resource_id)
        .where(
            t.object_views.c.container == container,
            t.object_views.c.name == name,
            t.resources.c.owner == owner,
            t.resources.c.state.in_(states),
        )
    ).scalar()
