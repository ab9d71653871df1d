"""Hosts of a shared catalog: which ones attached what, declaring a dead one (``atoll host forget``), and
finding stale attachments — of daemons that died on this host, or of forgotten hosts — for fsck."""

from __future__ import annotations

import builtins
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update

from provider.catalog import schema as t
from provider.errors import Conflict, NotFound, PermissionDenied
from provider.model import Resource
from provider.services.base import Service
from provider.utils.host import HOST, now

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostInfo:
    name: str
    state: str  # this-host | alive | forgotten
    attachments: int
    seen_at: str | None
    forgotten_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "attachments": self.attachments,
            "seen_at": self.seen_at,
            "forgotten_at": self.forgotten_at,
        }


@dataclass(frozen=True)
class StaleAttachment:
    """An attachment nothing will ever detach: ``reason`` says why."""

    resource: Resource
    host: str
    where: str
    reason: str


class HostService(Service):
    def list(self) -> builtins.list[HostInfo]:
        """Every host that attached something or was forgotten, with its number of attachments."""
        with self.catalog.read() as conn:
            counts = dict(
                conn.execute(select(t.attachments.c.host, func.count()).group_by(t.attachments.c.host)).all()
            )
            rows = {r.name: r for r in conn.execute(select(t.hosts))}
        names = sorted(set(counts) | set(rows) | {HOST})
        return [self._info(name, rows.get(name), counts.get(name, 0)) for name in names]

    def _info(self, name: str, row: Any, attachments: int) -> HostInfo:
        state = "this-host" if name == HOST else (row.state if row is not None else "alive")
        seen = row.seen_at if row is not None else None
        forgotten = row.forgotten_at if row is not None else None
        return HostInfo(name, state, attachments, seen, forgotten)

    def forgotten(self, conn: Connection) -> set[str]:
        rows = conn.execute(select(t.hosts.c.name).where(t.hosts.c.state == "forgotten"))
        return {name for (name,) in rows}

    def forget(self, name: str) -> builtins.list[str]:
        """Declare host ``name`` dead: drop its attachments (breaking its RBD write locks on the way), so
        its volumes can be deleted or attached elsewhere; its pending operations become interrupted ones
        for fsck. Returns the names of the resources released. Admins only.

        :raises Conflict: ``name`` is this host.
        """
        if not self.caller.admin:
            raise PermissionDenied(reason="only an admin may declare a host dead")
        if name == HOST:
            raise Conflict(reason=f"{name} is this host: it is running this command, so it is not dead")
        with self.catalog.write() as conn:
            known = conn.execute(select(t.hosts.c.name).where(t.hosts.c.name == name)).first()
            rids = [
                rid
                for (rid,) in conn.execute(
                    select(t.attachments.c.resource_id).where(t.attachments.c.host == name)
                )
            ]
            if known is None and not rids:
                raise NotFound(what="host", ref=name)
            self._mark_forgotten(conn, name, known is not None)
            released = []
            for rid in rids:
                res = self.load(conn, rid, states=("available", "deleted", "pending"))
                self.store.datapath.forget_remote(conn, res, name)
                released.append(res.name)
        LOG.warning("host %s forgotten: released %s", name, ", ".join(released) or "nothing")
        return released

    def _mark_forgotten(self, conn: Connection, name: str, known: bool) -> None:
        stamp = now()
        if known:
            conn.execute(
                update(t.hosts).where(t.hosts.c.name == name).values(state="forgotten", forgotten_at=stamp)
            )
        else:
            conn.execute(t.hosts.insert().values(name=name, state="forgotten", forgotten_at=stamp))

    # ---- fsck ------------------------------------------------------------------------------------
    def stale_attachments(self) -> builtins.list[StaleAttachment]:
        """Attachments on this host whose device or daemon is gone, and attachments of forgotten hosts."""
        datapath = self.store.datapath
        found = []
        with self.catalog.read() as conn:
            gone = self.forgotten(conn)
            for row in conn.execute(select(t.attachments)).all():
                if row.host != HOST and row.host not in gone:
                    continue  # a live host answers for its own attachments
                res = self.load(conn, row.resource_id, states=("available", "deleted", "pending"))
                where = row.device or row.uri or "?"
                reason = "its host was forgotten" if row.host != HOST else datapath.stale_reason(res, row)
                if reason is not None:
                    found.append(StaleAttachment(res, row.host, where, reason))
        return found

    def release(self, stale: StaleAttachment) -> None:
        """Repair one stale attachment: undo its leftovers here, or drop a forgotten host's record."""
        datapath = self.store.datapath
        if stale.host == HOST:
            datapath.release_stale(stale.resource)
            return
        with self.catalog.write() as conn:
            datapath.forget_remote(conn, stale.resource, stale.host)
