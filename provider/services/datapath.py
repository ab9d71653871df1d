"""The data path as a service: attach and detach under the resource's lock, recorded in the catalog,
and the live operations volumes use while attached."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Row, delete, select, update

from atoll_common.rollback import rollback
from provider.backends.base import SnapshotResult
from provider.backends.qcow2 import Qcow2Backend
from provider.catalog import schema as t
from provider.datapath.base import Attacher, Request
from provider.datapath.direct import DirectAttacher
from provider.datapath.domains import Libvirt
from provider.errors import CapabilityNotSupported, DataPathError, InUse, NotFound, PermissionDenied
from provider.model import Access, Attachment, Mode, Resource
from provider.services.base import Service, res_key
from provider.utils import procs
from provider.utils.faults import failpoint
from provider.utils.host import HOST, now
from provider.utils.names import UUID_RE

LOG = logging.getLogger(__name__)


def record_host(conn: Connection, host: str) -> None:
    """This host attaches things: it is alive (again, if it had been forgotten)."""
    stamp = now()
    updated = conn.execute(
        update(t.hosts).where(t.hosts.c.name == host).values(state="alive", seen_at=stamp, forgotten_at=None)
    )
    if updated.rowcount == 0:
        conn.execute(t.hosts.insert().values(name=host, state="alive", seen_at=stamp))


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
        domain=state.get("domain"),
        target=state.get("target"),
        direct=bool(state.get("direct")),
    )


class DataPath(Service):
    """``attach``/``detach`` for any resource; ``live_*`` for the volume service (which holds the lock)."""

    def attacher(self, res: Resource, att: Attachment | None = None, direct: bool = False) -> Attacher:
        """The attacher ``res``'s backend declares for its disk format, or for a ``direct`` attachment
        (QEMU opens the qcow2 file itself) the one that goes through libvirt."""
        backend = self.store.backend(res.backend)
        if direct or (att is not None and att.direct):
            if not isinstance(backend, Qcow2Backend) or res.disk_format != "qcow2":
                raise CapabilityNotSupported(
                    backend=f"{backend.name} ({res.disk_format} {res.kind})",
                    operation="give QEMU the qcow2 file directly (--direct is for qcow2 volumes)",
                )
            return DirectAttacher(
                backend, self.store.config.run_dir, self.store.run, self.store.config.libvirt.uri
            )
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

    def save(self, att: Attachment, pid: int | None = None) -> None:
        """Record ``att`` (replacing the resource's record on this host); ``pid``: the daemon serving it."""
        with self.catalog.write(res_key(att.resource_id), f"host:{att.host}") as conn:
            self._forget(conn, att.resource_id)
            record_host(conn, att.host)
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
                    pid=pid,
                    proc_start=procs.start_time(pid) if pid is not None else None,
                )
            )

    def _forget(self, conn: Connection, rid: str) -> None:
        conn.execute(
            delete(t.attachments).where(t.attachments.c.resource_id == rid, t.attachments.c.host == HOST)
        )

    # ---- attach / detach -------------------------------------------------------------------------
    def request(self, res: Resource, userspace: bool, readonly: bool | None) -> Request:
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

    @contextmanager
    def locked(self, ref: str, *, detaching: bool = False) -> Iterator[Resource]:
        """Resolve ``ref``, check the caller may use it, hold its lock and yield it as it is now (for
        ``detaching``, also a resource deleted while attached, by id)."""
        if detaching:
            res = self._find_for_detach(ref)
            with self.catalog.read() as conn:
                self._check_access(conn, res)
        else:
            with self.catalog.read() as conn:
                res = self.resolve(conn, ref)
                self._check_access(conn, res)
        with self.lock(res.id, res.kind):
            if not detaching:
                with self.catalog.read() as conn:
                    res = self.load(conn, res.id)
            yield res

    def attach(self, ref: str, *, userspace: bool = False, readonly: bool | None = None) -> Attachment:
        """Attach ``ref`` (a volume, or read-only: a snapshot, image or object) on this host."""
        with self.locked(ref) as res:
            return self.attach_locked(res, userspace=userspace, readonly=readonly)

    def attach_locked(
        self, res: Resource, *, userspace: bool = False, readonly: bool | None = None, direct: bool = False
    ) -> Attachment:
        """``attach`` for a caller that holds the lock; ``direct``: QEMU will open the qcow2 file itself."""
        req = self.request(res, userspace or direct, readonly)
        current = self.attachment(res.id)
        attacher = self.attacher(res, current, direct=direct)
        if current is not None:
            self._check_same(res, current, req, direct)
            if attacher.healthy(current):
                return current
            LOG.warning("the data path of %s %s is down: bringing it up again", res.kind, res.name)
        att = attacher.attach(res, req)
        failpoint("attach.after-datapath")
        with rollback() as undo:
            undo.push(attacher.detach, res, att)
            self.save(att, attacher.server_pid(att))
        LOG.info("%s %s attached: %s", res.kind, res.name, " ".join(att.lines))
        return att

    def _check_same(self, res: Resource, current: Attachment, req: Request, direct: bool) -> None:
        if (current.mode, current.access, current.direct) == (req.mode, req.access, direct):
            return
        how = f"{current.mode} in {current.access} ({current.device or current.uri})"
        if current.direct:
            how = f"to libvirt domain {current.domain} as {current.target}, its qcow2 file opened by QEMU"
        raise InUse(what=res.kind, ref=res.name, reason=f"it is attached {how}: detach it first")

    def detach(self, ref: str) -> None:
        """Undo what attach made for ``ref`` on this host; detaching a detached resource does nothing.

        :raises InUse: it is plugged into a libvirt domain (unplug it with ``--domain`` first).
        """
        with self.locked(ref, detaching=True) as res:
            att = self.attachment(res.id)
            if att is not None and att.domain is not None:
                raise InUse(
                    what=res.kind,
                    ref=res.name,
                    reason=f"it is plugged into libvirt domain {att.domain} as {att.target}: "
                    f"atoll volume detach {res.name} --domain {att.domain}",
                )
            self.detach_locked(res, att)

    def detach_locked(self, res: Resource, att: Attachment | None) -> None:
        """Release the data path of ``res`` (the caller holds the lock and has unplugged it)."""
        self.attacher(res, att).detach(res, att)
        failpoint("detach.after-datapath")
        with self.catalog.write(res_key(res.id)) as conn:
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
        """Refuse ``operation`` while ``res`` is attached on any host (several share an rbd store), saying
        what holds it and how to release it."""
        with self.catalog.read() as conn:
            row = conn.execute(select(t.attachments).where(t.attachments.c.resource_id == res.id)).first()
            host = conn.execute(select(t.hosts).where(t.hosts.c.name == row.host)).first() if row else None
        if row is None:
            return
        att = _from_row(row)
        where = att.device or att.uri or "?"
        if att.domain is not None:
            where += f", plugged into libvirt domain {att.domain} as {att.target}"
        detach = f"atoll volume detach {res.name}"
        if att.host != HOST:
            forgotten = host is not None and host.state == "forgotten"
            hint = (
                "'atoll fsck --repair' drops it"
                if forgotten
                else f"'atoll host forget {att.host}' if it is dead"
            )
            reason = (
                f"attached at {where} on host {att.host} since {row.created_at}: "
                f"run '{detach}' there, or {hint}"
            )
        elif (stale := self.stale_reason(res, row)) is not None:
            reason = (
                f"its attachment at {where} is stale ({stale}): "
                f"'{detach}' or 'atoll fsck --repair' releases it"
            )
        else:
            served = f", served by pid {row.pid}" if row.pid else ""
            reason = (
                f"attached at {where} since {row.created_at}{served}: detach it to {operation} ('{detach}')"
            )
        raise InUse(what=res.kind, ref=res.name, reason=reason)

    def stale_reason(self, res: Resource, row: Row[Any]) -> str | None:
        """Why the attachment ``row`` on this host no longer works, or None while it does."""
        if row.pid is not None and not procs.alive(row.pid, row.proc_start):
            return f"its daemon, pid {row.pid}, is gone"
        if not self.attacher(res).healthy(_from_row(row)):
            return "its device or daemon is gone"
        return None

    def release_stale(self, res: Resource) -> bool:
        """Undo what is left of a stale attachment of ``res`` on this host and drop its record; False when
        it is healthy after all (checked again under the resource's lock)."""
        with self.lock(res.id, res.kind):
            with self.catalog.read() as conn:
                row = conn.execute(
                    select(t.attachments).where(
                        t.attachments.c.resource_id == res.id, t.attachments.c.host == HOST
                    )
                ).first()
            if row is None or self.stale_reason(res, row) is None:
                return False
            self.attacher(res).detach(res, _from_row(row))
            with self.catalog.write(res_key(res.id)) as conn:
                self._forget(conn, res.id)
        LOG.warning("released the stale attachment of %s %s", res.kind, res.name)
        return True

    def forget_remote(self, conn: Connection, res: Resource, host: str) -> None:
        """Drop the attachment of ``res`` on the dead host ``host``, breaking its shared-storage lock."""
        self.attacher(res).break_lock(res, host)
        conn.execute(
            delete(t.attachments).where(t.attachments.c.resource_id == res.id, t.attachments.c.host == host)
        )

    def _live(self, res: Resource) -> tuple[Attacher, Attachment] | None:
        att = self.attachment(res.id)
        if att is None:
            return None
        attacher = self.attacher(res, att)
        if not attacher.healthy(att):
            raise DataPathError(
                reason=f"the data path of {res.kind} {res.name} is down: attach it again to recover it, "
                "or detach it"
            )
        return attacher, att

    def switch_to_clone(
        self, res: Resource, new_locator: str, base_locator: str
    ) -> tuple[bool, Attachment | None]:
        """Have the data path of ``res`` serve ``new_locator``, a fresh clone of ``base_locator``, where
        it is attached. ``(True, att)``: ``att`` serves it now (to be recorded with the new locator, see
        :meth:`rewrite`); ``(True, None)``: ``res`` is attached nowhere; ``(False, None)``: it is attached
        in a way that cannot switch (another host, a libvirt domain, read-only, a device in use)."""
        with self.catalog.read() as conn:
            rows = conn.execute(select(t.attachments).where(t.attachments.c.resource_id == res.id)).all()
        if not rows:
            return True, None
        live = self._live(res)
        if live is None or len(rows) > 1 or live[1].domain is not None or live[1].direct:
            return False, None
        att = live[0].reclone(res, live[1], new_locator, base_locator)
        return att is not None, att

    def rewrite(self, conn: Connection, att: Attachment) -> None:
        """Record where ``att`` is served now (its device, URI and files), in the caller's transaction."""
        conn.execute(
            update(t.attachments)
            .where(t.attachments.c.resource_id == att.resource_id, t.attachments.c.host == att.host)
            .values(device=att.device, uri=att.uri, state=json.dumps(att.state()))
        )

    def live_grow(self, res: Resource, size: int) -> bool:
        """Grow an attached volume through its data path; False when it is not attached here."""
        live = self._live(res)
        if live is None:
            return False
        live[0].grow(res, live[1], size)
        if live[1].domain is not None and not live[1].direct:
            self._resize_in_domain(live[1], size)
        return True

    def _resize_in_domain(self, att: Attachment, size: int) -> None:
        """The disk grew under the QEMU of the domain it is plugged into: make QEMU (and so the guest)
        see the new size (a raw file or device of that size already: QEMU only takes note)."""
        lv = Libvirt(self.store.config.libvirt.uri)
        with lv.connect() as conn:
            try:
                dom = lv.domain(conn, att.domain or "")
            except NotFound:
                return
            if att.target in lv.live_disks(dom):
                lv.resize(dom, att.target or "", size)

    def live_snapshot(self, res: Resource, new_locator: str) -> SnapshotResult | None:
        """Snapshot an attached volume through its data path; None: the backend may do it offline."""
        live = self._live(res)
        if live is None:
            return None
        result = live[0].snapshot(res, live[1], new_locator)
        if result is not None:
            self._moved(res, live[1], result.volume_locator)
        return result

    def live_push_overlay(self, res: Resource, top_locator: str, new_locator: str) -> None:
        live = self._live(res)
        if live is None:
            raise DataPathError(reason=f"{res.kind} {res.name} is not attached on this host")
        live[0].push_overlay(res, live[1], top_locator, new_locator)
        self._moved(res, live[1], new_locator)

    def _moved(self, res: Resource, att: Attachment, top_locator: str) -> None:
        """QEMU opens a direct attachment's top file itself: the record follows it to ``top_locator``."""
        if att.direct:
            path = str(self.store.backend(res.backend).path(top_locator))
            self.save(replace(att, uri=path, path=path))

    def live_stream(self, res: Resource, layer: str, base_locator: str) -> bool:
        """Merge into ``layer`` the layers down to ``base_locator`` live; False when it cannot be done."""
        live = self._live(res)
        return live[0].stream(res, live[1], layer, base_locator) if live else False
