"""Swift containers over the object views: a project's account, its containers, listings and read ACLs.

An account is a project. A container exists when the project created it (a ``containers`` row with its
metadata and read ACL) or while it holds the project's objects (the CLI and snapshots create objects
without a row). Read ACLs (``X-Container-Read``) name projects (``P``, ``P:*``, ``P:user``) or
everyone authenticated (``.r:*``, ``*:*``); listings need ``.rlistings`` with ``.r:*``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update

from provider.catalog import schema as t
from provider.errors import Conflict, InvalidInput, NotFound
from provider.model import Resource
from provider.services import names
from provider.services.base import Service
from provider.utils.host import now
from provider.utils.names import check_key, check_name, check_value

MAX_LISTING = 10000
ACCOUNT_META = "swift-account-meta:"
_ANYONE = (".r:*", "*:*", "*")


@dataclass(frozen=True)
class Container:
    name: str
    count: int
    bytes: int
    meta: dict[str, str]
    read_acl: str
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "count": self.count, "bytes": self.bytes, "last_modified": self.created_at}


@dataclass(frozen=True)
class Entry:
    """One row of a container listing: an object, or (``subdir`` set) a pseudo-directory."""

    name: str
    bytes: int = 0
    hash: str = ""
    content_type: str = ""
    last_modified: str = ""
    subdir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.subdir is not None:
            return {"subdir": self.subdir}
        return {
            "name": self.name,
            "bytes": self.bytes,
            "hash": self.hash,
            "content_type": self.content_type,
            "last_modified": self.last_modified.rstrip("Z"),
        }


@dataclass(frozen=True)
class Page:
    """Listing parameters, validated once."""

    prefix: str = ""
    delimiter: str = ""
    marker: str = ""
    end_marker: str = ""
    limit: int = MAX_LISTING

    def __post_init__(self) -> None:
        if not 0 <= self.limit <= MAX_LISTING:
            raise InvalidInput("limit must be between 0 and %(max)d", max=MAX_LISTING)
        if len(self.delimiter) > 1:
            raise InvalidInput("delimiter must be one character")


def grants(acl: str, project: str, listing: bool) -> bool:
    """Does the read ACL ``acl`` let ``project`` read (or, with ``listing``, list) the container?"""
    items = [a.strip() for a in acl.split(",") if a.strip()]
    for item in items:
        if item in _ANYONE:
            return not listing or item != ".r:*" or ".rlistings" in items
        if item.split(":", 1)[0] == project and not item.startswith("."):
            return True
    return False


class ContainerService(Service):
    # ---- the caller's own containers -----------------------------------------------------------------
    def create(self, name: str, meta: dict[str, str] | None = None, read_acl: str | None = None) -> bool:
        """Create container ``name`` (True), or update an existing one's metadata and ACL (False)."""
        check_name(name, "container")
        with self.catalog.write() as conn:
            if self._row(conn, self.caller.name, name) is not None:
                self._update(conn, name, meta or {}, [], read_acl)
                return False
            conn.execute(
                insert(t.containers).values(
                    project=self.caller.name,
                    name=name,
                    meta=json.dumps(_checked(meta or {})),
                    read_acl=_checked_acl(read_acl or ""),
                    created_at=now(),
                )
            )
            return True

    def set(
        self, name: str, meta: dict[str, str], unset: list[str], read_acl: str | None = None
    ) -> Container:
        with self.catalog.write() as conn:
            self._require(conn, self.caller.name, name)
            if self._row(conn, self.caller.name, name) is None:  # implicit until now
                conn.execute(
                    insert(t.containers).values(
                        project=self.caller.name, name=name, meta="{}", read_acl="", created_at=now()
                    )
                )
            self._update(conn, name, meta, unset, read_acl)
        return self.show(self.caller.name, name)

    def _update(
        self, conn: Connection, name: str, meta: dict[str, str], unset: list[str], read_acl: str | None
    ) -> None:
        row = self._row(conn, self.caller.name, name)
        merged = {k: v for k, v in json.loads(row.meta if row else "{}").items() if k not in unset}
        merged.update(_checked(meta))
        values: dict[str, str] = {"meta": json.dumps(merged)}
        if read_acl is not None:
            values["read_acl"] = _checked_acl(read_acl)
        conn.execute(
            update(t.containers)
            .where(t.containers.c.project == self.caller.name, t.containers.c.name == name)
            .values(**values)
        )

    def delete(self, name: str) -> None:
        """Delete an empty container (409 while it holds objects)."""
        with self.catalog.write() as conn:
            self._require(conn, self.caller.name, name)
            if self._stats(conn, self.caller.name, name)[0]:
                raise Conflict(reason=f"container {name!r} is not empty")
            conn.execute(
                delete(t.containers).where(
                    t.containers.c.project == self.caller.name, t.containers.c.name == name
                )
            )

    def account(self, page: Page) -> list[Container]:
        """The caller's containers, explicit and implicit, by name."""
        project = self.caller.name
        with self.catalog.read() as conn:
            names = {
                r
                for (r,) in conn.execute(select(t.containers.c.name).where(t.containers.c.project == project))
            }
            names |= {
                r
                for (r,) in conn.execute(
                    select(t.object_views.c.container)
                    .join(t.resources, t.resources.c.id == t.object_views.c.resource_id)
                    .where(t.resources.c.owner == project, t.resources.c.state == "available")
                    .distinct()
                )
            }
            chosen = [n for n in sorted(names) if _in_page(n, page)][: page.limit]
            return [self._container(conn, project, n) for n in chosen]

    def account_meta(self, account: str) -> dict[str, str]:
        return dict(json.loads(self.catalog.get_meta(ACCOUNT_META + account) or "{}"))

    def set_account_meta(self, meta: dict[str, str], unset: list[str]) -> dict[str, str]:
        """Merge metadata into the caller's account (``X-Account-Meta-*``)."""
        key = ACCOUNT_META + self.caller.name
        merged = {k: v for k, v in self.account_meta(self.caller.name).items() if k not in unset}
        merged.update(_checked(meta))
        with self.catalog.write() as conn:
            self.catalog.set_meta(conn, key, json.dumps(merged))
        return merged

    # ---- any readable container ----------------------------------------------------------------------
    def show(self, account: str, name: str) -> Container:
        with self.catalog.read() as conn:
            self._check_access(conn, account, name, listing=False)
            return self._container(conn, account, name)

    def listing(self, account: str, name: str, page: Page) -> list[Entry]:
        with self.catalog.read() as conn:
            self._check_access(conn, account, name, listing=True)
            return _collapse(self._entries(conn, account, name, page), page)

    def open_object(self, account: str, container: str, name: str) -> Resource:
        """The object ``container/name`` of ``account``, if the caller may read it."""
        with self.catalog.read() as conn:
            self._check_access(conn, account, container, listing=False)
            rid = self._object_id(conn, account, container, name)
            if rid is None:
                raise NotFound(what="object", ref=f"{container}/{name}")
            return self.load(conn, rid)

    def exists(self, account: str, name: str) -> bool:
        with self.catalog.read() as conn:
            return self._row(conn, account, name) is not None or self._stats(conn, account, name)[0] > 0

    # ---- helpers ---------------------------------------------------------------------------------
    def _object_id(self, conn: Connection, account: str, container: str, name: str) -> str | None:
        return names.object_id(conn, container, name, account)

    def _check_access(self, conn: Connection, account: str, name: str, *, listing: bool) -> None:
        self._require(conn, account, name)
        if self.caller.admin or account == self.caller.name:
            return
        row = self._row(conn, account, name)
        if row is None or not grants(row.read_acl, self.caller.name, listing):
            raise NotFound(what="container", ref=name)  # another project's: as if it did not exist

    def _require(self, conn: Connection, account: str, name: str) -> None:
        if self._row(conn, account, name) is None and not self._stats(conn, account, name)[0]:
            raise NotFound(what="container", ref=name)

    def _row(self, conn: Connection, account: str, name: str) -> Any:
        return conn.execute(
            select(t.containers).where(t.containers.c.project == account, t.containers.c.name == name)
        ).first()

    def _owned(self, account: str, name: str) -> Any:
        return and_(
            t.object_views.c.container == name,
            t.resources.c.owner == account,
            t.resources.c.state == "available",
        )

    def _stats(self, conn: Connection, account: str, name: str) -> tuple[int, int]:
        count, size = conn.execute(
            select(func.count(), func.coalesce(func.sum(t.resources.c.size), 0))
            .select_from(t.object_views)
            .join(t.resources, t.resources.c.id == t.object_views.c.resource_id)
            .where(self._owned(account, name))
        ).one()
        return int(count), int(size)

    def _container(self, conn: Connection, account: str, name: str) -> Container:
        row = self._row(conn, account, name)
        count, size = self._stats(conn, account, name)
        return Container(
            name=name,
            count=count,
            bytes=size,
            meta=json.loads(row.meta) if row else {},
            read_acl=row.read_acl if row else "",
            created_at=row.created_at if row else "",
        )

    def _entries(self, conn: Connection, account: str, name: str, page: Page) -> list[Entry]:
        ov, r, d = t.object_views, t.resources, t.digests
        q = (
            select(ov.c.name, r.c.size, ov.c.content_type, ov.c.created_at, d.c.md5)
            .join(r, r.c.id == ov.c.resource_id)
            .outerjoin(d, (d.c.backend == r.c.backend) & (d.c.locator == r.c.locator))
            .where(self._owned(account, name))
            .order_by(ov.c.name)
        )
        if page.prefix:
            q = q.where(ov.c.name.startswith(page.prefix, autoescape=True))
        if page.marker:
            q = q.where(ov.c.name > page.marker)
        if page.end_marker:
            q = q.where(ov.c.name < page.end_marker)
        if not page.delimiter:
            q = q.limit(page.limit)
        return [
            Entry(name=n, bytes=size, hash=md5 or "", content_type=ct, last_modified=created)
            for n, size, ct, created, md5 in conn.execute(q)
        ]


def _collapse(entries: list[Entry], page: Page) -> list[Entry]:
    """Fold names that hold the delimiter after the prefix into one ``subdir`` entry each."""
    if not page.delimiter:
        return entries
    out: list[Entry] = []
    seen: set[str] = set()
    for e in entries:
        cut = e.name.find(page.delimiter, len(page.prefix))
        if cut < 0:
            out.append(e)
        else:
            sub = e.name[: cut + 1]
            if sub in seen or sub <= page.marker:
                continue
            seen.add(sub)
            out.append(Entry(name=sub, subdir=sub))
        if len(out) == page.limit:
            break
    return out


def _in_page(name: str, page: Page) -> bool:
    return (
        name.startswith(page.prefix)
        and (not page.marker or name > page.marker)
        and (not page.end_marker or name < page.end_marker)
    )


def _checked(meta: dict[str, str]) -> dict[str, str]:
    return {check_key(k, "metadata key"): check_value(k, v) for k, v in meta.items()}


def _checked_acl(acl: str) -> str:
    return check_value("X-Container-Read", acl)
