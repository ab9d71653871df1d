"""Cinder attachments (microversion 3.27+) over the data path, recorded in the catalog's attachment table
with the Cinder id, the instance and ``reserved``/``attaching``/``attached``.

Without a connector an attachment only reserves the volume (Nova's first step); with one (at create or at
update) the volume is attached on this host and the answer carries connection info: a block device, an
NBD socket or an rbd image."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from sqlalchemy import Connection, delete, select, update

from provider.catalog import schema as t
from provider.errors import Conflict, InUse, InvalidInput, NotFound
from provider.model import Resource
from provider.services.base import Service, res_key
from provider.utils.host import HOST, new_id, now
from provider.utils.names import UUID_RE

MODES = ("rw", "ro")


@dataclass(frozen=True)
class AttachmentInfo:
    """One attachment of a volume, whoever made it (the Volume API, the CLI or Ganeti: those have no
    Cinder id)."""

    id: str | None
    volume_id: str
    instance_uuid: str | None
    host: str
    status: str  # reserved | attaching | attached
    mode: str
    access: str
    kind: str
    device: str | None
    uri: str | None
    created_at: str


def _info(row: Any) -> AttachmentInfo:
    return AttachmentInfo(
        id=row.attachment_id,
        volume_id=row.resource_id,
        instance_uuid=row.instance_uuid,
        host=row.host,
        status=row.attach_status or "attached",
        mode=row.mode,
        access=row.access,
        kind=row.kind,
        device=row.device,
        uri=row.uri,
        created_at=row.created_at,
    )


def attachments_of(conn: Connection, rid: str) -> builtins.list[AttachmentInfo]:
    rows = conn.execute(select(t.attachments).where(t.attachments.c.resource_id == rid)).all()
    return [_info(r) for r in rows]


def _rbd_image(locator: str) -> tuple[str, str]:
    """``pool/[namespace/]image`` (each part %-quoted) → (pool, image name as rbd names it)."""
    parts = [unquote(p) for p in locator.partition("@")[0].split("/")]
    return parts[0], "/".join(parts[1:])


class VolumeAttachmentService(Service):
    def _key(self, attachment_id: str) -> str:
        """The lock key of the volume an attachment belongs to (its writers lock the volume)."""
        with self.catalog.read() as conn:
            row, _vol = self._row(conn, attachment_id)
        return res_key(row.resource_id)

    def _row(self, conn: Connection, attachment_id: str) -> tuple[Any, Resource]:
        row = None
        if UUID_RE.match(attachment_id or ""):
            row = conn.execute(
                select(t.attachments).where(t.attachments.c.attachment_id == attachment_id)
            ).first()
        if row is None:
            raise NotFound(what="attachment", ref=attachment_id)
        try:
            vol = self.store.volume_api.owned(conn, row.resource_id)
        except NotFound:
            raise NotFound(what="attachment", ref=attachment_id) from None
        return row, vol

    def connection_info(self, att: AttachmentInfo, vol: Resource) -> dict[str, Any]:
        """What a hypervisor host needs to open the volume (Cinder's ``connection_info``); nothing while
        the attachment is only a reservation."""
        if att.status == "reserved":
            return {}
        data: dict[str, Any] = {"access_mode": att.mode, "volume_id": vol.id, "host": att.host}
        if att.kind == "rbd":
            pool, image = _rbd_image(vol.locator)
            data.update(name=f"{pool}/{image}", pool=pool, image=image, uri=att.uri)
            data.update(auth_enabled=True, auth_username=self.store.config.store.user)
            return {"driver_volume_type": "rbd", "data": data}
        if att.kind == "nbd":
            socket = (att.uri or "").removeprefix("nbd:unix:").partition(":")[0]
            data.update(uri=att.uri, socket_path=socket)
            return {"driver_volume_type": "nbd", "data": data}
        data.update(device_path=att.device or att.uri)
        return {"driver_volume_type": "local", "data": data}

    def _check_connector(self, connector: dict[str, Any] | None) -> bool:
        """Validate a (non-empty) connector; return whether it asks for a userspace path
        (``atoll_userspace``)."""
        if not isinstance(connector, dict) or not connector:
            raise InvalidInput("a connector must be an object naming the host that opens the volume")
        host = connector.get("host")
        if host not in (None, HOST):
            raise InvalidInput(
                "this server attaches volumes on its own host %(mine)r only, not on %(host)r",
                mine=HOST,
                host=host,
            )
        return bool(connector.get("atoll_userspace"))

    def create(
        self,
        volume_id: str,
        *,
        connector: dict[str, Any] | None,
        instance_uuid: str | None = None,
        mode: str = "rw",
    ) -> tuple[AttachmentInfo, dict[str, Any]]:
        """Reserve the volume (no connector) or attach it on this host; return the attachment and its
        connection info."""
        if mode not in MODES:
            raise InvalidInput("attach mode %(mode)r is not rw or ro", mode=mode)
        with self.catalog.write(res_key(volume_id)) as conn:
            vol = self.store.volume_api.owned(conn, volume_id)
            if attachments_of(conn, vol.id):
                raise InUse(what="volume", ref=vol.id, reason="it is attached already (no multiattach)")
            if self.store.volume_api.is_readonly(conn, vol):
                mode = "ro"  # os-update_readonly_flag: every attachment of the volume is read-only
            aid = new_id()
            if not connector:
                conn.execute(
                    t.attachments.insert().values(
                        resource_id=vol.id,
                        host=HOST,
                        mode=mode,
                        access="kernelspace",
                        kind="block",
                        state="{}",
                        created_at=now(),
                        attachment_id=aid,
                        instance_uuid=instance_uuid,
                        attach_status="reserved",
                    )
                )
        if connector:
            self._attach(vol, aid, instance_uuid, connector, mode)
        return self.show(aid)

    def _attach(
        self, vol: Resource, aid: str, instance_uuid: str | None, connector: dict[str, Any], mode: str
    ) -> None:
        userspace = self._check_connector(connector)
        self.store.volumes.attach(vol.id, userspace=userspace, readonly=mode == "ro")
        with self.catalog.write(res_key(vol.id)) as conn:
            conn.execute(
                update(t.attachments)
                .where(t.attachments.c.resource_id == vol.id, t.attachments.c.host == HOST)
                .values(attachment_id=aid, instance_uuid=instance_uuid, attach_status="attaching")
            )

    def show(self, attachment_id: str) -> tuple[AttachmentInfo, dict[str, Any]]:
        with self.catalog.read() as conn:
            row, vol = self._row(conn, attachment_id)
        att = _info(row)
        return att, self.connection_info(att, vol)

    def update(self, attachment_id: str, connector: dict[str, Any] | None) -> tuple[AttachmentInfo, dict]:
        """Cinder's attachment update: the connector of a reservation arrives, the volume is attached."""
        self._check_connector(connector)
        with self.catalog.write(self._key(attachment_id)) as conn:
            row, vol = self._row(conn, attachment_id)
            if row.attach_status == "reserved":
                conn.execute(delete(t.attachments).where(t.attachments.c.attachment_id == attachment_id))
        if row.attach_status == "reserved":
            assert connector is not None
            try:
                self._attach(vol, attachment_id, row.instance_uuid, connector, row.mode)
            except BaseException:
                self._reserve_again(row)
                raise
        return self.show(attachment_id)

    def _reserve_again(self, row: Any) -> None:
        with self.catalog.write(res_key(row.resource_id)) as conn:
            if not attachments_of(conn, row.resource_id):
                conn.execute(t.attachments.insert().values(**row._mapping))

    def complete(self, attachment_id: str) -> AttachmentInfo:
        """The hypervisor uses the volume now: ``attached`` (the volume shows ``in-use``)."""
        with self.catalog.write(self._key(attachment_id)) as conn:
            row, _ = self._row(conn, attachment_id)
            if row.attach_status == "reserved":
                raise Conflict(reason=f"attachment {attachment_id} has no connector yet: update it first")
            conn.execute(
                update(t.attachments)
                .where(t.attachments.c.attachment_id == attachment_id)
                .values(attach_status="attached")
            )
        return self.show(attachment_id)[0]

    def delete(self, attachment_id: str) -> None:
        """Drop a reservation, or detach the volume from this host (what attach made is undone)."""
        with self.catalog.write(self._key(attachment_id)) as conn:
            row, vol = self._row(conn, attachment_id)
            if row.attach_status == "reserved":
                conn.execute(delete(t.attachments).where(t.attachments.c.attachment_id == attachment_id))
                return
        self.store.volumes.detach(vol.id)

    def list(self, volume_id: str | None = None) -> builtins.list[AttachmentInfo]:
        """The Cinder attachments of the caller's project (of one volume when ``volume_id`` is given)."""
        with self.catalog.read() as conn:
            rows = conn.execute(select(t.attachments).where(t.attachments.c.attachment_id.is_not(None))).all()
            found = []
            for row in rows:
                if volume_id is not None and row.resource_id != volume_id:
                    continue
                try:
                    self.store.volume_api.owned(conn, row.resource_id)
                except NotFound:
                    continue
                found.append(_info(row))
        return sorted(found, key=lambda a: a.created_at)
