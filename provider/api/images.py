"""The Image API (Glance v2) over the image view of Atoll resources: an image id is the resource id.

Routes: ``/v2/images`` (list with filters and paging, create), ``/v2/images/{id}`` (show, JSON-patch,
delete), ``/v2/images/{id}/file`` (streamed upload and download), ``…/actions/deactivate|reactivate``,
``…/tags/{tag}``, ``…/members[/{member}]`` and ``/v2/schemas/*``.
"""

from __future__ import annotations

from typing import IO, Any

import falcon

from provider.api import image_schemas
from provider.api.base import Api, image_body, read_json, send_json
from provider.api.image_views import PATCH_TYPES, next_link, parse_patch, parse_query, render, split_create
from provider.errors import Conflict, InvalidInput
from provider.services import Store
from provider.services.imports_glance import IMPORT_METHODS
from provider.services.streams import open_image_data


class Images:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        store = self.api.store_for(req)
        found, more = store.glance.list(parse_query(req))
        body: dict[str, Any] = {
            "images": [render(store, rec) for rec in found],
            "first": "/v2/images",
            "schema": "/v2/schemas/images",
        }
        if more and found:
            body["next"] = next_link(req, found[-1].id)
        send_json(resp, body)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        store = self.api.store_for(req)
        fields, props, tags = split_create(read_json(req, self.api.config.api.max_request_body))
        rec = store.glance.create(fields, props, tags)
        resp.location = f"/v2/images/{rec.id}"
        # Glance names the import methods on every create; openstacksdk (openstack image create --import)
        # imports only when the header lists the method
        resp.set_header("OpenStack-image-import-methods", ",".join(IMPORT_METHODS))
        send_json(resp, render(store, rec), 201)


class Image:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        store = self.api.store_for(req)
        send_json(resp, render(store, store.glance.show(image_id)))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        store = self.api.store_for(req)
        body = read_json(req, self.api.config.api.max_request_body, *PATCH_TYPES)
        body = (
            [op for op in body if not _location_added(store, image_id, op)]
            if isinstance(body, list)
            else body
        )
        rec = store.glance.show(image_id)
        changes, props, removed, tags = parse_patch(body, rec)
        send_json(resp, render(store, store.glance.update(image_id, changes, props, removed, tags)))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        self.api.store_for(req).glance.delete(image_id)
        resp.status = 204


def _location_added(store: Store, image_id: str, op: Any) -> bool:
    """``add`` on ``/locations/-`` (what ``glance location-add`` sends): checked, nothing else to do."""
    if not (
        isinstance(op, dict) and op.get("op") == "add" and op.get("path") in ("/locations/-", "/locations/0")
    ):
        return False
    store.image_adoption.check_location(image_id, op.get("value"))
    return True


class ImageFile:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_put(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        store = self.api.store_for(req)
        limit = self.api.config.api.max_image_size
        stream, declared = image_body(req, limit)
        resp.status = 204
        try:
            if store.glance_imports.upload_converted(image_id, stream, declared, limit):
                self.api.wake_imports()  # qcow2 and the like: staged, then converted by the import workers
                return
            store.glance.upload(image_id, stream, declared, limit, defer_sha256=True)
        except Conflict:  # raised before any byte is read: the image is not queued
            if _nothing_for_its_object(store, image_id, stream, declared):
                return
            raise
        # md5 and sha512 (Glance's checksum and os_hash_value) came from the bytes received; the
        # resource's sha256 is read back from the store after the client has its answer
        self.api.later.run(store.scrub.record_digest, image_id)

    def on_get(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        data = open_image_data(self.api.store_for(req), image_id)
        if data.stream is None:
            resp.status = 204
            return
        resp.content_type = "application/octet-stream"
        resp.content_length = data.size
        if data.checksum:
            resp.set_header("Content-MD5", data.checksum)
        resp.stream = data.stream


def _nothing_for_its_object(store: Store, image_id: str, stream: IO[bytes], declared: int | None) -> bool:
    """An empty upload to the caller's image that was registered from its object (same id, active at
    once): the data is there and nothing changes. The glance and openstack CLIs upload their standard
    input when it is no terminal (``openstack image create --id OBJECT_ID … < /dev/null``, a script):
    Glance would make a 0-byte image; here the object stays the image's data. Any byte is refused (409)."""
    rec = store.glance.show(image_id)
    mine = store.caller.admin or rec.owner == store.caller.name
    if not (mine and rec.has_object and rec.status == "active" and not rec.queued):
        return False
    return declared == 0 or (declared is None and not stream.read(1))


class Action:
    def __init__(self, api: Api, active: bool) -> None:
        self.api = api
        self.active = active

    def on_post(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        self.api.store_for(req).glance.set_active(image_id, self.active)
        resp.status = 204


class Tag:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_put(self, req: falcon.Request, resp: falcon.Response, image_id: str, tag: str) -> None:
        self.api.store_for(req).glance.add_tag(image_id, tag)
        resp.status = 204

    def on_delete(self, req: falcon.Request, resp: falcon.Response, image_id: str, tag: str) -> None:
        self.api.store_for(req).glance.remove_tag(image_id, tag)
        resp.status = 204


class Members:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        members = self.api.store_for(req).image_members.list(image_id)
        send_json(resp, {"members": [m.to_dict() for m in members], "schema": "/v2/schemas/members"})

    def on_post(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        body = read_json(req, self.api.config.api.max_request_body)
        member = body.get("member") if isinstance(body, dict) else None
        if not isinstance(member, str):
            raise InvalidInput("the body needs a member (a project id)")
        send_json(resp, self.api.store_for(req).image_members.add(image_id, member).to_dict())


class Member:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response, image_id: str, member: str) -> None:
        send_json(resp, self.api.store_for(req).image_members.show(image_id, member).to_dict())

    def on_put(self, req: falcon.Request, resp: falcon.Response, image_id: str, member: str) -> None:
        body = read_json(req, self.api.config.api.max_request_body)
        status = body.get("status") if isinstance(body, dict) else None
        if not isinstance(status, str):
            raise InvalidInput("the body needs a status: pending, accepted or rejected")
        send_json(resp, self.api.store_for(req).image_members.set_status(image_id, member, status).to_dict())

    def on_delete(self, req: falcon.Request, resp: falcon.Response, image_id: str, member: str) -> None:
        self.api.store_for(req).image_members.remove(image_id, member)
        resp.status = 204


def register(api: Api) -> None:
    api.catalog_entry("image", "glance", "")
    api.route("/v2/images", Images(api))
    api.route("/v2/images/{image_id}", Image(api))
    api.route("/v2/images/{image_id}/file", ImageFile(api))
    api.route("/v2/images/{image_id}/actions/deactivate", Action(api, False))
    api.route("/v2/images/{image_id}/actions/reactivate", Action(api, True))
    api.route("/v2/images/{image_id}/tags/{tag}", Tag(api))
    api.route("/v2/images/{image_id}/members", Members(api))
    api.route("/v2/images/{image_id}/members/{member}", Member(api))
    image_schemas.register(api)
    api.store.glance.recover_uploads()
