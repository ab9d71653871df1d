"""The Volume API's record of one volume: the caller's project's volume by id, where it came from (image,
snapshot or volume) and Cinder's per-volume flags (bootable, read-only), kept in the volume view's
``origin`` JSON."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, select, update

from provider.catalog import schema as t
from provider.errors import InvalidInput, NotFound
from provider.model import Resource
from provider.services.base import Service, res_key
from provider.services.volume_api_attachments import attachments_of
from provider.utils.names import UUID_RE


def origin_json(origin: dict[str, Any]) -> str:
    """The ``origin`` column: what is known of where the volume came from, and its flags (unset ones left
    out, so that an unset flag keeps its default)."""
    return json.dumps({k: v for k, v in origin.items() if v is not None})


class VolumeRecords(Service):
    def project(self) -> str:
        return self.store.quotas.project()

    def owned(self, conn: Connection, vid: str, what: str = "volume") -> Resource:
        """The caller's project's volume ``vid`` (an id); another project's is not found, as in Cinder."""
        if not UUID_RE.match(vid or ""):
            raise NotFound(what=what, ref=vid)
        try:
            res = self.load(conn, vid)
        except NotFound:
            raise NotFound(what=what, ref=vid) from None
        if res.volume is None or not (self.caller.admin or res.owner == self.project()):
            raise NotFound(what=what, ref=vid)
        return res

    def _origin(self, conn: Connection, res: Resource) -> dict[str, Any]:
        """image_id, snapshot_id or source_volid: as recorded at creation through the API, else (a volume
        the CLI or Ganeti made) from the lineage."""
        origin: dict[str, Any] = {"image_id": None, "snapshot_id": None, "source_volid": None}
        origin["bootable_flag"] = origin["readonly_flag"] = None
        recorded = conn.execute(
            select(t.volume_views.c.origin).where(t.volume_views.c.resource_id == res.id)
        ).scalar_one_or_none()
        if recorded:
            origin.update(json.loads(recorded))
            return origin
        if res.parent is None:
            return origin
        try:
            parent = self.load(conn, res.parent)
        except NotFound:
            return origin
        if parent.kind == "snapshot":
            origin["snapshot_id"] = parent.id
        elif parent.kind == "image":
            origin["image_id"] = parent.id
        return origin

    def set_bootable(self, vid: str, bootable: bool) -> None:
        """Cinder's bootable flag (``os-set_bootable``); by default a volume made from an image is."""
        self._set_flag(vid, "bootable_flag", bootable)

    def set_readonly(self, vid: str, readonly: bool) -> None:
        """Cinder's read-only flag (``os-update_readonly_flag``): the volume's attachments are read-only.
        Changed only while the volume is not attached (an attachment keeps the mode it was made with)."""
        self._set_flag(vid, "readonly_flag", readonly)

    def _set_flag(self, vid: str, key: str, value: bool) -> None:
        with self.catalog.write(res_key(vid)) as conn:  # attachments check the flags under this lock
            vol = self.owned(conn, vid)
            if key == "readonly_flag" and attachments_of(conn, vol.id):
                raise InvalidInput("volume %(id)s is attached: its read-only flag cannot change", id=vid)
            origin = {**self._origin(conn, vol), key: "true" if value else "false"}
            conn.execute(
                update(t.volume_views)
                .where(t.volume_views.c.resource_id == vol.id)
                .values(origin=origin_json(origin))
            )

    def is_readonly(self, conn: Connection, vol: Resource) -> bool:
        return self._origin(conn, vol)["readonly_flag"] == "true"
