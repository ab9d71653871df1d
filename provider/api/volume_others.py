"""Volume API: ``/snapshots``, ``/attachments`` (microversion 3.27+; ``os-complete`` 3.44+) and
``/os-quota-sets``."""

from __future__ import annotations

from typing import Any

import falcon

from provider.api import volume_views as views
from provider.api.base import Api, send_json
from provider.api.volume import PREFIX, VolumeResource, as_bool, as_int, optional_text
from provider.errors import InvalidInput
from provider.services.quotas import RESOURCES

ATTACHMENTS = (3, 27)
COMPLETE = (3, 44)
ATTACH_MODE = (3, 54)


# ---- snapshots ------------------------------------------------------------------------------------------
class Snapshots(VolumeResource):
    detail = False

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        found = store.volume_snapshots.list(volume_id=req.get_param("volume_id"), name=req.get_param("name"))
        status = req.get_param("status")
        found = [s for s in found if status is None or s.status == status]
        base = self.base(project_id)
        send_json(resp, {"snapshots": [views.snapshot(s, base, detail=self.detail) for s in found]})

    def on_post(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        body = self.body(req, "snapshot")
        volume_id = optional_text(body, "volume_id")
        if volume_id is None:
            raise InvalidInput("a snapshot needs volume_id")
        snap = store.volume_snapshots.create(
            volume_id,
            name=optional_text(body, "name"),
            description=optional_text(body, "description"),
            metadata=body.get("metadata"),
            force=as_bool(body.get("force", False), "force"),
        )
        send_json(resp, {"snapshot": views.snapshot(snap, self.base(project_id))}, 202)


class SnapshotsDetail(Snapshots):
    detail = True


class Snapshot(VolumeResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str, snapshot_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        send_json(
            resp,
            {"snapshot": views.snapshot(store.volume_snapshots.show(snapshot_id), self.base(project_id))},
        )

    def on_put(self, req: falcon.Request, resp: falcon.Response, project_id: str, snapshot_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        body = self.body(req, "snapshot")
        snap = store.volume_snapshots.update(
            snapshot_id,
            name=optional_text(body, "name"),
            description=optional_text(body, "description"),
            metadata=body.get("metadata"),
        )
        send_json(resp, {"snapshot": views.snapshot(snap, self.base(project_id))})

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, project_id: str, snapshot_id: str
    ) -> None:
        store, _ = self.begin(req, resp, project_id)
        store.volume_snapshots.delete(snapshot_id)
        resp.status = 202


# ---- attachments ----------------------------------------------------------------------------------------
class Attachments(VolumeResource):
    min_version = ATTACHMENTS

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        found = store.volume_attachments.list(req.get_param("volume_id"))
        send_json(resp, {"attachments": [views.attachment(a, None) for a in found]})

    def on_post(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        store, version = self.begin(req, resp, project_id)
        body = self.body(req, "attachment")
        volume_id = optional_text(body, "volume_uuid") or optional_text(body, "volume_id")
        if volume_id is None:
            raise InvalidInput("an attachment needs volume_uuid")
        connector = body.get("connector")
        if connector is not None and not isinstance(connector, dict):
            raise InvalidInput("connector must be an object")
        mode = (optional_text(body, "mode") if version >= ATTACH_MODE else None) or "rw"
        att, info = store.volume_attachments.create(
            volume_id, connector=connector, instance_uuid=optional_text(body, "instance_uuid"), mode=mode
        )
        send_json(resp, {"attachment": views.attachment(att, info)})


class AttachmentsDetail(Attachments):
    pass


class Attachment(VolumeResource):
    min_version = ATTACHMENTS

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str, attachment_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        att, info = store.volume_attachments.show(attachment_id)
        send_json(resp, {"attachment": views.attachment(att, info)})

    def on_put(self, req: falcon.Request, resp: falcon.Response, project_id: str, attachment_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        body = self.body(req, "attachment")
        att, info = store.volume_attachments.update(attachment_id, body.get("connector"))
        send_json(resp, {"attachment": views.attachment(att, info)})

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, project_id: str, attachment_id: str
    ) -> None:
        store, _ = self.begin(req, resp, project_id)
        store.volume_attachments.delete(attachment_id)
        send_json(resp, {"attachments": []})


class AttachmentAction(VolumeResource):
    min_version = COMPLETE

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, project_id: str, attachment_id: str
    ) -> None:
        store, _ = self.begin(req, resp, project_id)
        data = self.json_object(req)
        if "os-complete" not in data:
            raise InvalidInput(
                "attachment action %(a)r is not supported (os-complete)", a=next(iter(data), "")
            )
        store.volume_attachments.complete(attachment_id)
        resp.status = 204


# ---- quotas ---------------------------------------------------------------------------------------------
class QuotaSet(VolumeResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str, target: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        usage = as_bool(req.get_param("usage") or False, "usage")
        send_json(resp, {"quota_set": views.quota_set(store.quotas.show(target), usage=usage)})

    def on_put(self, req: falcon.Request, resp: falcon.Response, project_id: str, target: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        body = self.body(req, "quota_set")
        limits = {k: as_int(v, k) for k, v in body.items() if k in RESOURCES}
        unknown = sorted(set(body) - set(RESOURCES) - set(views.UNENFORCED) - {"id", "tenant_id"})
        if unknown:
            raise InvalidInput(
                "unknown quota %(keys)s (one of %(all)s)", keys=", ".join(unknown), all=", ".join(RESOURCES)
            )
        send_json(resp, {"quota_set": views.quota_set(store.quotas.set(target, limits))})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, project_id: str, target: str) -> None:
        """Back to the defaults."""
        store, _ = self.begin(req, resp, project_id)
        store.quotas.reset(target)
        resp.status = 200


class QuotaDefaults(VolumeResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str, target: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        q = store.quotas.defaults()
        send_json(resp, {"quota_set": {**views.quota_set(q), "id": target}})


def register(api: Api) -> None:
    routes: dict[str, Any] = {
        "snapshots": Snapshots(api),
        "snapshots/detail": SnapshotsDetail(api),
        "snapshots/{snapshot_id}": Snapshot(api),
        "attachments": Attachments(api),
        "attachments/detail": AttachmentsDetail(api),
        "attachments/{attachment_id}": Attachment(api),
        "attachments/{attachment_id}/action": AttachmentAction(api),
        "os-quota-sets/{target}": QuotaSet(api),
        "os-quota-sets/{target}/defaults": QuotaDefaults(api),
    }
    for path, resource in routes.items():
        api.route(f"{PREFIX}/{path}", resource)
