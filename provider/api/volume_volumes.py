"""Volume API: ``/volumes`` (list, detail, create, show, update, delete), their actions (``os-extend``,
``os-volume_upload_image``) and metadata."""

from __future__ import annotations

import ast
from typing import Any
from urllib.parse import urlencode

import falcon

from provider.api import volume_views as views
from provider.api.base import Api, send_json
from provider.api.volume import PREFIX, VolumeResource, as_bool, as_int, optional_text, sort_params
from provider.errors import InvalidInput, NotFound
from provider.services.volume_api_model import VolumeInfo

LIVE_EXTEND = (3, 42)  # Cinder extends attached volumes from this microversion on
SUMMARY = (3, 12)
ACTIONS = ("os-extend", "os-volume_upload_image", "os-set_bootable", "os-update_readonly_flag")


def _metadata_filter(text: str | None) -> dict[str, str] | None:
    """cinderclient sends ``metadata={'k': 'v'}`` (a Python literal) in the query string."""
    if not text:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise InvalidInput("metadata filter %(t)r is not a {'key': 'value'} mapping", t=text) from e
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidInput("metadata filter %(t)r is not a {'key': 'value'} mapping", t=text)
    return value


class VolumesSummary(VolumeResource):
    """``GET /volumes/summary`` (3.12+; ``openstack volume summary``): count, GiB and metadata values."""

    min_version = SUMMARY

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        found = store.volume_api.list(
            all_projects=as_bool(req.get_param("all_tenants") or False, "all_tenants")
        )
        send_json(resp, {"volume-summary": views.summary(found)})


class Volumes(VolumeResource):
    detail = False

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        sort_key, sort_dir = sort_params(req)
        limit = req.get_param("limit")
        found = store.volume_api.list(
            name=req.get_param("name"),
            status=req.get_param("status"),
            metadata=_metadata_filter(req.get_param("metadata")),
            sort_key=sort_key,
            sort_dir=sort_dir,
            limit=as_int(limit, "limit") if limit is not None else None,
            marker=req.get_param("marker"),
            all_projects=as_bool(req.get_param("all_tenants") or False, "all_tenants"),
        )
        base = self.base(project_id)
        body: dict[str, Any] = {"volumes": [views.volume(v, base, detail=self.detail) for v in found]}
        if limit is not None and found and len(found) == as_int(limit, "limit"):
            query = urlencode({**req.params, "marker": found[-1].id})
            path = "volumes/detail" if self.detail else "volumes"
            body["volumes_links"] = [{"rel": "next", "href": f"{base}/{path}?{query}"}]
        send_json(resp, body)

    def on_post(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        body = self.body(req, "volume")
        size = body.get("size")
        metadata = body.get("metadata")
        vol = store.volume_api.create(
            as_int(size, "size") if size is not None else None,
            name=optional_text(body, "name"),
            description=optional_text(body, "description"),
            metadata=metadata,
            image_ref=optional_text(body, "imageRef"),
            snapshot_id=optional_text(body, "snapshot_id"),
            source_volid=optional_text(body, "source_volid"),
            request_id=req.context.request_id,
            placement=(body.get("volume_type"), body.get("availability_zone")),
        )
        send_json(resp, {"volume": views.volume(vol, self.base(project_id))}, 202)


class VolumesDetail(Volumes):
    detail = True


class Volume(VolumeResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str, volume_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        send_json(resp, {"volume": views.volume(store.volume_api.show(volume_id), self.base(project_id))})

    def on_put(self, req: falcon.Request, resp: falcon.Response, project_id: str, volume_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        body = self.body(req, "volume")
        name = optional_text(body, "name") or optional_text(body, "display_name")
        description = optional_text(body, "description")
        if description is None:
            description = optional_text(body, "display_description")
        vol = store.volume_api.update(
            volume_id, name=name, description=description, metadata=body.get("metadata")
        )
        send_json(resp, {"volume": views.volume(vol, self.base(project_id))})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, project_id: str, volume_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        store.volume_api.delete(volume_id)
        resp.status = 202


def _args(data: dict[str, Any], action: str) -> dict[str, Any]:
    args = data[action]
    return args if isinstance(args, dict) else {}


def _flag(data: dict[str, Any], action: str, key: str) -> bool:
    """The true/false ``key`` of a flag action (``os-set_bootable``, ``os-update_readonly_flag``)."""
    args = _args(data, action)
    if key not in args:
        raise InvalidInput("%(action)s needs %(key)s (true or false)", action=action, key=key)
    return as_bool(args[key], key)


class VolumeAction(VolumeResource):
    """``POST /volumes/{id}/action`` with one of ACTIONS."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, project_id: str, volume_id: str) -> None:
        store, version = self.begin(req, resp, project_id)
        data = self.json_object(req)
        if "os-extend" in data:
            args = _args(data, "os-extend")
            if "new_size" not in args:
                raise InvalidInput("os-extend needs new_size (GiB)")
            current = store.volume_api.show(volume_id)
            if current.attachments and version < LIVE_EXTEND:
                raise InvalidInput(
                    "volume %(id)s is attached: extending it live needs volume API version 3.42 or later",
                    id=volume_id,
                )
            store.volume_api.extend(volume_id, as_int(args["new_size"], "new_size"))
            resp.status = 202
            return
        if "os-volume_upload_image" in data:
            self._upload(store, resp, volume_id, data["os-volume_upload_image"])
            return
        if "os-set_bootable" in data:
            store.volume_api.set_bootable(volume_id, _flag(data, "os-set_bootable", "bootable"))
            resp.status = 200
            return
        if "os-update_readonly_flag" in data:
            store.volume_api.set_readonly(volume_id, _flag(data, "os-update_readonly_flag", "readonly"))
            resp.status = 202
            return
        action = next(iter(data), "(none)")
        raise InvalidInput(
            "volume action %(a)r is not supported (%(known)s)", a=action, known=", ".join(ACTIONS)
        )

    def _upload(self, store: Any, resp: falcon.Response, volume_id: str, args: Any) -> None:
        if not isinstance(args, dict) or not isinstance(args.get("image_name"), str):
            raise InvalidInput("os-volume_upload_image needs image_name")
        disk_format = args.get("disk_format") or "raw"
        container_format = args.get("container_format") or "bare"
        image = store.volume_api.upload_to_image(
            volume_id,
            args["image_name"],
            force=as_bool(args.get("force", False), "force"),
            disk_format=disk_format,
            container_format=container_format,
            visibility=args.get("visibility") or "private",
        )
        vol: VolumeInfo = store.volume_api.show(volume_id)
        send_json(
            resp, {"os-volume_upload_image": views.upload(vol, image, disk_format, container_format)}, 202
        )


class _MetadataResource(VolumeResource):
    """The id comes as ``volume_id`` or ``snapshot_id`` (each route names it as its siblings do)."""

    def __init__(self, api: Api, snapshots: bool = False) -> None:
        super().__init__(api)
        self.snapshots = snapshots

    def service(self, store: Any) -> Any:
        return store.volume_snapshots if self.snapshots else store.volume_api


class Metadata(_MetadataResource):
    """``/volumes/{id}/metadata`` and ``/snapshots/{id}/metadata``: show, merge (POST), replace (PUT)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str, **ids: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        send_json(resp, {"metadata": self.service(store).show(*ids.values()).metadata})

    def on_post(self, req: falcon.Request, resp: falcon.Response, project_id: str, **ids: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        merged = self.service(store).set_metadata(*ids.values(), self.body(req, "metadata"))
        send_json(resp, {"metadata": merged})

    def on_put(self, req: falcon.Request, resp: falcon.Response, project_id: str, **ids: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        body = self.body(req, "metadata")
        replaced = self.service(store).set_metadata(*ids.values(), body, replace=True)
        send_json(resp, {"metadata": replaced})


class MetadataKey(_MetadataResource):
    def on_get(
        self, req: falcon.Request, resp: falcon.Response, project_id: str, key: str, **ids: str
    ) -> None:
        store, _ = self.begin(req, resp, project_id)
        meta = self.service(store).show(*ids.values()).metadata
        if key not in meta:
            raise NotFound(what="metadata key", ref=key)
        send_json(resp, {"meta": {key: meta[key]}})

    def on_put(
        self, req: falcon.Request, resp: falcon.Response, project_id: str, key: str, **ids: str
    ) -> None:
        store, _ = self.begin(req, resp, project_id)
        item = self.body(req, "meta")
        if list(item) != [key]:
            raise InvalidInput("the body's meta must hold exactly the key %(key)r of the URL", key=key)
        self.service(store).set_metadata(*ids.values(), item)
        send_json(resp, {"meta": item})

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, project_id: str, key: str, **ids: str
    ) -> None:
        store, _ = self.begin(req, resp, project_id)
        self.service(store).delete_metadata(*ids.values(), key)
        resp.status = 200


def register(api: Api) -> None:
    api.route(f"{PREFIX}/volumes", Volumes(api))
    api.route(f"{PREFIX}/volumes/detail", VolumesDetail(api))
    api.route(f"{PREFIX}/volumes/summary", VolumesSummary(api))
    api.route(f"{PREFIX}/volumes/{{volume_id}}", Volume(api))
    api.route(f"{PREFIX}/volumes/{{volume_id}}/action", VolumeAction(api))
    for kind, field in (("volumes", "volume_id"), ("snapshots", "snapshot_id")):
        api.route(f"{PREFIX}/{kind}/{{{field}}}/metadata", Metadata(api, kind == "snapshots"))
        api.route(f"{PREFIX}/{kind}/{{{field}}}/metadata/{{key}}", MetadataKey(api, kind == "snapshots"))
