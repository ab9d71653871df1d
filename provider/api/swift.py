"""The Object Storage API (Swift v1, as python-swiftclient uses it): auth, ``/info`` and accounts.

Containers are in :mod:`provider.api.swift_containers`, objects (with copy and the Pithos hashmap
protocol) in :mod:`provider.api.swift_objects`. An account is a project: ``/v1/AUTH_<project id>``.
"""

from __future__ import annotations

import functools

import falcon

from provider.api import swift_tempurl
from provider.api.base import Api, send_json
from provider.api.swift_containers import ContainerResource
from provider.api.swift_http import (
    caller,
    listing_format,
    meta_headers,
    page,
    require_owner,
    send_listing,
    set_meta_headers,
)
from provider.api.swift_objects import ObjectResource
from provider.errors import AtollError, AuthenticationFailed
from provider.services import Caller
from provider.services.containers import MAX_LISTING
from provider.utils.blockhash import BLOCK_HASH, BLOCK_SIZE
from provider.utils.names import MAX_VALUE


class SwiftAuth:
    """``GET /auth/v1.0`` with ``X-Auth-User: project:user`` and ``X-Auth-Key``: a Keystone token
    scoped to that project, and the account's storage URL."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        who, key = req.get_header("X-Auth-User") or "", req.get_header("X-Auth-Key") or ""
        project, sep, user = who.partition(":")
        if not sep or not project or not user or not key:
            raise AuthenticationFailed(reason="send X-Auth-User: <project>:<user> and X-Auth-Key")
        ttl = self.api.config.api.token_ttl
        token, info = self.api.store.identity.authenticate(user, key, project, ttl)
        resp.set_header("X-Auth-Token", token)
        resp.set_header("X-Storage-Token", token)
        resp.set_header("X-Storage-Url", f"{self.api.config.api.base_url}/v1/AUTH_{info.project_id}")
        resp.set_header("X-Auth-Token-Expires", str(ttl))
        resp.status = falcon.HTTP_200
        resp.data = b""

    on_head = on_get


class Info:
    """``GET /info``: the limits and features this server really has."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(
            resp,
            {
                "swift": {
                    "version": "atoll",
                    "max_file_size": self.api.config.api.max_image_size,
                    "max_object_name_length": 1024,
                    "max_container_name_length": 128,
                    "container_listing_limit": MAX_LISTING,
                    "account_listing_limit": MAX_LISTING,
                    "max_meta_name_length": 128,
                    "max_meta_value_length": MAX_VALUE,
                    "strict_cors_mode": True,
                },
                "tempurl": {
                    "methods": list(swift_tempurl.METHODS),
                    "allowed_digests": list(swift_tempurl.DIGESTS),
                    "incoming_remove_headers": [],
                    "outgoing_remove_headers": [],
                },
                "atoll": {
                    "copy": "thin clone (no data copied)",
                    "hashmap": {"block_size": BLOCK_SIZE, "block_hash": BLOCK_HASH},
                    "object_id_header": "X-Atoll-Id",
                },
            },
        )


class AccountResource:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_head(self, req: falcon.Request, resp: falcon.Response, account: str) -> None:
        require_owner(req, account)
        containers = self.api.store_for(req).containers.account(page(req))
        resp.set_header("X-Account-Container-Count", str(len(containers)))
        resp.set_header("X-Account-Object-Count", str(sum(c.count for c in containers)))
        resp.set_header("X-Account-Bytes-Used", str(sum(c.bytes for c in containers)))
        meta = self.api.store_for(req).containers.account_meta(account)
        if caller(req).read_only:  # a Temp-URL-Key signs writes: not for a token that may only read
            meta = {k: v for k, v in meta.items() if k not in swift_tempurl.KEYS}
        set_meta_headers(resp, "Account", meta)
        resp.status = falcon.HTTP_204

    def on_get(self, req: falcon.Request, resp: falcon.Response, account: str) -> None:
        fmt = listing_format(req)
        self.on_head(req, resp, account)
        resp.status = falcon.HTTP_200
        items = [c.to_dict() for c in self.api.store_for(req).containers.account(page(req))]
        send_listing(resp, fmt, ("account", f"AUTH_{account}"), items, "container")

    def on_post(self, req: falcon.Request, resp: falcon.Response, account: str) -> None:
        require_owner(req, account)
        self.api.store_for(req).containers.set_account_meta(*meta_headers(req, "Account"))
        resp.status = falcon.HTTP_204


def register(api: Api) -> None:
    api.catalog_entry("object-store", "swift", "/v1/AUTH_{project_id}")
    api.route("/auth/v1.0", SwiftAuth(api), public=True)
    api.route("/info", Info(api), public=True)
    api.route("/v1/AUTH_{account}", AccountResource(api))
    api.route("/v1/AUTH_{account}/{container}", ContainerResource(api))
    api.route(
        "/v1/AUTH_{account}/{container}/{name:path}",
        ObjectResource(api),
        signed=functools.partial(swift_tempurl.authorize, keys=_temp_url_keys(api)),
    )


def _temp_url_keys(api: Api) -> swift_tempurl.AccountKeys:
    def keys(account: str) -> list[str]:
        """The account's Temp-URL-Keys; none once its project is gone or disabled."""
        store = api.store.for_caller(Caller(name=account))
        try:
            if not store.identity.show_project(account).enabled:
                return []
        except AtollError:
            return []
        meta = store.containers.account_meta(account)
        return [meta[k] for k in swift_tempurl.KEYS if meta.get(k)]

    return keys
