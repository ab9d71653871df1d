"""The data path as a service: attach and detach under the resource's lock, recorded in the catalog,
and the live operations volumes use while attached."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import Connection, Row, delete, select

from atoll_common.rollback import rollback
from provider.backends.base import SnapshotResult
from provider.catalog import schema as t
from provider.datapath.base import Attacher, Request
from provider.errors import CapabilityNotSupported, DataPathError, InUse, NotFound, PermissionDenied
from provider.model import Access, Attachment, Mode, Resource
from provider.services.base import Service
from provider.utils.host import HOST, now
from provider.utils.names import UUID_RE

LOG = logging.getLogger(__name__)


def _from_row(row: Row[Any]) -> Attachment:
    state = json.loads(row.state)
    return Attachment(
        resource_id=row.resource_id,
        mode=row.mode,
        access=row.access,
        kind=row.kind,
        device=row.device,
        uri=row.uri,
        host=row.host,
        path=state.get("path"),
        daemon_dir=state.get("daemon_dir"),
        socket_dir=state.get("socket_dir"),
    )


class DataPath(Service):
    """``attach``/``detach`` for any resource; ``live_*`` for the volume service (which holds the lock)."""

    def attacher(self, res: Resource) -> Attacher:
        """The attacher ``res``'s backend declares for its disk format."""
        backend = self.store.backend(res.backend)
        cls = backend.attacher_class(res.disk_format)
        if cls is None:
            raise CapabilityNotSupported(backend=backend.name, operation="attach resources on this host")
        return cls(backend, self.store.config.run_dir, self.store.run)

    # ---- records ---------------------------------------------------------------------------------
    def record(self, conn: Connection, rid: str) -> Attachment | None:
        row = conn.execute(
            select(t.attachments).where(t.attachments.c.resource_id == rid, t.attachments.c.host == HOST)
        ).first()
        return _from_row(row) if row is not None else None

    def attachment(self, rid: str) -> Attachment | None:
        """The attachment of resource ``rid`` on this host, if any."""
        with self.catalog.read() as conn:
            return self.record(conn, rid)

    def _save(self, att: Attachment) -> None:
        with self.catalog.write() as conn:
            self._forget(conn, att.resource_id)
            conn.execute(
                t.attachments.insert().values(
                    resource_id=att.resource_id,
                    host=att.host,
                    mode=att.mode,
                    access=att.access,
                    kind=att.kind,
                    device=att.device,
                    uri=att.uri,
                    state=json.dumps(att.state()),
                    created_at=now(),
                )
            )

    def _forget(self, conn: Connection, rid: str) -> None:
        conn.execute(
            delete(t.attachments).where(t.attachments.c.resource_id == rid, t.attachments.c.host == HOST)
        )

    # ---- attach / detach -------------------------------------------------------------------------
    def _request(self, res: Resource, userspace: bool, readonly: bool | None) -> Request:
        if res.mode == "ro" and readonly is False:
            raise PermissionDenied(reason=f"{res.kind} {res.name!r} is read-only: it attaches read-only")
        mode: Mode = "ro" if readonly or res.mode == "ro" else "rw"
        access: Access = "userspace" if userspace else "kernelspace"
        return Request(mode, access)

    def _check_access(self, conn: Connection, res: Resource) -> None:
        if res.mode == "rw":
            self.check_owner(res)
        else:
            self.check_read(conn, res)

    def attach(self, ref: str, *, userspace: bool = False, readonly: bool | None = None) -> Attachment:
        """Attach ``ref`` (a volume, or read-only: a snapshot, image or object) on this host."""
        with self.catalog.read() as conn:
            res = self.resolve(conn, ref)
            self._check_access(conn, res)
        req = self._request(res, userspace, readonly)
        with self.lock(res.id, res.kind):
            with self.catalog.read() as conn:
                res = self.load(conn, res.id)
                current = self.record(conn, res.id)
            attacher = self.attacher(res)
            if current is not None:
                if (current.mode, current.access) != (req.mode, req.access):
                    raise InUse(
                        what=res.kind,
                        ref=res.name,
                        reason=f"it is attached {current.mode} in {current.access} "
                        f"({current.device or current.uri}): detach it first",
                    )
                if attacher.healthy(current):
                    return current
                LOG.warning("the data path of %s %s is down: bringing it up again", res.kind, res.name)
            att = attacher.attach(res, req)
            with rollback() as undo:
                undo.push(attacher.detach, res, att)
                self._save(att)
        LOG.info("%s %s attached: %s", res.kind, res.name, " ".join(att.lines))
        return att

    def _find_for_detach(self, ref: str) -> Resource:
        """Detach also reaches a resource deleted while attached (by id), so nothing stays behind."""
        try:
            with self.catalog.read() as conn:
                return self.resolve(conn, ref)
        except NotFound:
            if not UUID_RE.match(ref):
                raise
            with self.catalog.read() as conn:
                return self.load(conn, ref, states=("deleted",))

    def detach(self, ref: str) -> None:
        """Undo what attach made for ``ref`` on this host; detaching a detached resource does nothing."""
        res = self._find_for_detach(ref)
        with self.catalog.read() as conn:
            self._check_access(conn, res)
        with self.lock(res.id, res.kind):
            with self.catalog.read() as conn:
                att = self.record(conn, res.id)
            self.attacher(res).detach(res, att)
            with self.catalog.write() as conn:
                self._forget(conn, res.id)
        if att is not None:
            LOG.info("%s %s detached", res.kind, res.name)

    def open(self, ref: str, exclusive: bool = True) -> None:
        """Ganeti ``open``: ``ref`` is ready for I/O on this host, alone, or (``exclusive`` False, during a
        live migration) together with the other host."""
        with self.catalog.read() as conn:
            res = self.resolve(conn, ref)
            self._check_access(conn, res)
        with self.lock(res.id, res.kind):
            self.attacher(res).open(res, exclusive)

    def close(self, ref: str) -> None:
        """Ganeti ``close``: this host stops I/O on ``ref``; what attach made stays until detach."""
        res = self._find_for_detach(ref)
        with self.catalog.read() as conn:
            self._check_access(conn, res)
        with self.lock(res.id, res.kind):
            self.attacher(res).close(res)

    # ---- live operations (the caller holds the resource's lock) ----------------------------------
    def refuse_if_attached(self, res: Resource, operation: str) -> None:
        """Refuse ``operation`` while ``res`` is attached on any host (several share an rbd store)."""
        with self.catalog.read() as conn:
            row = conn.execute(select(t.attachments).where(t.attachments.c.resource_id == res.id)).first()
        if row is not None:
            att = _from_row(row)
            where = (att.device or att.uri or "") + ("" if att.host == HOST else f" on {att.host}")
            raise InUse(what=res.kind, ref=res.name, reason=f"attached at {where}: detach it to {operation}")

    def _live(self, res: Resource) -> tuple[Attacher, Attachment] | None:
        att = self.attachment(res.id)
        if att is None:
            return None
        attacher = self.attacher(res)
        if not attacher.healthy(att):
            raise DataPathError(
                reason=f"the data path of {res.kind} {res.name} is down: attach it again to recover it, "
                "or detach it"
            )
        return attacher, att

    def live_grow(self, res: Resource, size: int) -> bool:
        """Grow an attached volume through its data path; False when it is not attached here."""
        live = self._live(res)
        if live is None:
            return False
        live[0].grow(res, live[1], size)
        return True

    def live_snapshot(self, res: Resource, new_locator: str) -> SnapshotResult | None:
        """Snapshot an attached volume through its data path; None: the backend may do it offline."""
        live = self._live(res)
        return live[0].snapshot(res, live[1], new_locator) if live else None

    def live_push_overlay(self, res: Resource, top_locator: str, new_locator: str) -> None:
        live = self._live(res)
        if live is None:
            raise DataPathError(reason=f"{res.kind} {res.name} is not attached on this host")
        live[0].push_overlay(res, live[1], top_locator, new_locator)

    def live_stream(self, res: Resource, layer: str, base_locator: str) -> bool:
        """Merge into ``layer`` the layers down to ``base_locator`` live; False when it cannot be done."""
        live = self._live(res)
        return live[0].stream(res, live[1], layer, base_locator) if live else False
