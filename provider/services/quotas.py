"""Per-project quotas: limits (project ``*`` holds the defaults), usage derived from the catalog, checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, delete, select

from provider.catalog import schema as t
from provider.errors import InvalidInput, PermissionDenied, QuotaExceeded
from provider.services.base import Service
from provider.utils.props import is_snapshot

GIB = 1 << 30
DEFAULTS_PROJECT = "*"
# Cinder's defaults for volumes, snapshots and gigabytes; images and object bytes unlimited (-1).
DEFAULT_LIMITS: dict[str, int] = {
    "volumes": 10,
    "snapshots": 10,
    "gigabytes": 1000,
    "images": -1,
    "object_bytes": -1,
}
RESOURCES = tuple(DEFAULT_LIMITS)


def gib(size: int) -> int:
    """Bytes → GiB, rounded up (what a quota in gigabytes counts)."""
    return -(-size // GIB)


@dataclass(frozen=True)
class QuotaSet:
    """One project's limits (-1: unlimited) and what it uses now."""

    project: str
    limits: dict[str, int]
    usage: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return {"project": self.project, "limits": self.limits, "usage": self.usage}


class QuotaService(Service):
    def project(self) -> str:
        """The project the caller acts for: the owner its new resources get."""
        return self.caller.name

    # ---- limits ----------------------------------------------------------------------------------
    def limits(self, conn: Connection, project: str) -> dict[str, int]:
        limits = dict(DEFAULT_LIMITS)
        rows = conn.execute(
            select(t.quotas.c.project, t.quotas.c.resource, t.quotas.c.hard_limit).where(
                t.quotas.c.project.in_([DEFAULTS_PROJECT, project])
            )
        ).all()
        for row in sorted(rows, key=lambda r: r.project != DEFAULTS_PROJECT):  # defaults first
            if row.resource in limits:
                limits[row.resource] = int(row.hard_limit)
        return limits

    def usage(self, conn: Connection, project: str) -> dict[str, int]:
        """What ``project`` holds now: volumes and snapshots count toward gigabytes, as in Cinder."""
        used = dict.fromkeys(RESOURCES, 0)
        q = (
            select(
                t.resources.c.size,
                t.resources.c.mode,
                t.image_views.c.properties,
                t.object_views.c.resource_id.label("object"),
            )
            .select_from(t.resources)
            .outerjoin(t.image_views, t.image_views.c.resource_id == t.resources.c.id)
            .outerjoin(t.object_views, t.object_views.c.resource_id == t.resources.c.id)
            .where(t.resources.c.owner == project, t.resources.c.state == "available")
        )
        for size, mode, props, obj in conn.execute(q):
            if mode == "rw":
                used["volumes"] += 1
                used["gigabytes"] += gib(size)
                continue
            if obj is not None:
                used["object_bytes"] += size
            if props is not None:
                if is_snapshot(json.loads(props)):
                    used["snapshots"] += 1
                    used["gigabytes"] += gib(size)
                else:
                    used["images"] += 1
        return used

    def show(self, project: str | None = None) -> QuotaSet:
        project = self._readable(project)
        with self.catalog.read() as conn:
            return QuotaSet(project, self.limits(conn, project), self.usage(conn, project))

    def set(self, project: str, limits: dict[str, int]) -> QuotaSet:
        """Set limits of ``project`` (``*``: the defaults); -1 is unlimited. Admins only."""
        if not self.caller.admin:
            raise PermissionDenied(reason="only an admin may change quotas")
        for key, value in limits.items():
            if key not in RESOURCES:
                known = ", ".join(RESOURCES)
                raise InvalidInput("unknown quota %(key)r (one of %(all)s)", key=key, all=known)
            if not isinstance(value, int) or isinstance(value, bool) or value < -1:
                raise InvalidInput("quota %(key)s must be an integer >= -1 (-1: unlimited)", key=key)
        with self.catalog.write() as conn:
            for key, value in limits.items():
                conn.execute(
                    delete(t.quotas).where(t.quotas.c.project == project, t.quotas.c.resource == key)
                )
                conn.execute(t.quotas.insert().values(project=project, resource=key, hard_limit=value))
        return self.show(project)

    def defaults(self) -> QuotaSet:
        """The limits a project without its own gets."""
        with self.catalog.read() as conn:
            return QuotaSet(
                DEFAULTS_PROJECT, self.limits(conn, DEFAULTS_PROJECT), dict.fromkeys(RESOURCES, 0)
            )

    def reset(self, project: str) -> QuotaSet:
        """Drop ``project``'s own limits: the defaults apply again. Admins only."""
        if not self.caller.admin:
            raise PermissionDenied(reason="only an admin may change quotas")
        with self.catalog.write() as conn:
            conn.execute(delete(t.quotas).where(t.quotas.c.project == project))
        return self.show(project)

    def _readable(self, project: str | None) -> str:
        mine = self.project()
        if project is None or project == mine:
            return mine
        if not self.caller.admin:
            raise PermissionDenied(reason=f"only an admin may see the quotas of project {project}")
        return project

    # ---- enforcement -----------------------------------------------------------------------------
    def check(self, conn: Connection, project: str, **asked: int) -> None:
        """Raise QuotaExceeded when adding ``asked`` (e.g. ``volumes=1, gigabytes=10``) passes a limit."""
        limits = self.limits(conn, project)
        usage = self.usage(conn, project)
        for key, amount in asked.items():
            limit = limits[key]
            if amount > 0 and limit >= 0 and usage[key] + amount > limit:
                raise QuotaExceeded(resource=key, project=project, used=usage[key], asked=amount, limit=limit)

    def require(self, **asked: int) -> None:
        """Refuse early what would pass a limit of the caller's project (the final check stays with
        the operation that stores)."""
        with self.catalog.read() as conn:
            self.check(conn, self.project(), **asked)

    @contextmanager
    def reserve(self, **asked: int) -> Iterator[None]:
        """Check ``asked`` against the caller's project and hold the project's quota lock while the
        block creates what it asked for (so two requests cannot both take the last unit)."""
        project = self.project()
        with self.lock(f"quota-{project}", "project"):
            with self.catalog.read() as conn:
                self.check(conn, project, **asked)
            yield
