"""Swift containers: ``PUT/HEAD/GET/POST/DELETE /v1/AUTH_<project>/<container>``, and Pithos' block
upload ``POST …/<container>?update`` (the body's 4 MiB blocks are staged for the next hashmap PUT)."""

from __future__ import annotations

import json

import falcon

from provider.api.base import Api
from provider.api.swift_http import (
    flag,
    http_date,
    listing_format,
    meta_headers,
    page,
    request_body,
    require_owner,
    send_listing,
    set_meta_headers,
    timestamp,
)


class ContainerResource:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_put(self, req: falcon.Request, resp: falcon.Response, account: str, container: str) -> None:
        require_owner(req, account)
        meta, _ = meta_headers(req, "Container")
        created = self.api.store_for(req).containers.create(
            container, meta, req.get_header("X-Container-Read")
        )
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_202

    def on_head(self, req: falcon.Request, resp: falcon.Response, account: str, container: str) -> None:
        info = self.api.store_for(req).containers.show(account, container)
        resp.set_header("X-Container-Object-Count", str(info.count))
        resp.set_header("X-Container-Bytes-Used", str(info.bytes))
        resp.set_header("X-Storage-Policy", "Policy-0")  # Swift's default policy: Atoll has one store
        resp.set_header("X-Timestamp", timestamp(info.created_at))
        resp.set_header("Last-Modified", http_date(info.created_at))
        if info.read_acl and account == self.api.store_for(req).caller.name:
            resp.set_header("X-Container-Read", info.read_acl)
        set_meta_headers(resp, "Container", info.meta)
        resp.status = falcon.HTTP_204

    def on_get(self, req: falcon.Request, resp: falcon.Response, account: str, container: str) -> None:
        fmt = listing_format(req)
        listing = self.api.store_for(req).containers.listing(account, container, page(req))
        self.on_head(req, resp, account, container)
        resp.status = falcon.HTTP_200
        items = [e.to_dict() for e in listing]
        send_listing(resp, fmt, ("container", container), items, "object")

    def on_post(self, req: falcon.Request, resp: falcon.Response, account: str, container: str) -> None:
        require_owner(req, account)
        store = self.api.store_for(req)
        if flag(req, "update"):
            store.containers.show(account, container)
            hashes = store.hashmaps.stage(request_body(req))
            resp.status = falcon.HTTP_202
            resp.content_type = "application/json"
            resp.data = json.dumps(hashes).encode()
            return
        meta, unset = meta_headers(req, "Container")
        store.containers.set(container, meta, unset, req.get_header("X-Container-Read"))
        resp.status = falcon.HTTP_204

    def on_delete(self, req: falcon.Request, resp: falcon.Response, account: str, container: str) -> None:
        require_owner(req, account)
        self.api.store_for(req).containers.delete(container)
        resp.status = falcon.HTTP_204
