"""The Volume API (Cinder v3) at ``/volume/v3/{project_id}``, as python-cinderclient and openstacksdk use it.

Registered in the service catalog as ``block-storage`` and ``volumev3``. Version discovery answers
``GET /volume`` (what cinderclient asks) and ``GET /volume/v3``; requests choose a microversion with
``OpenStack-API-Version: volume 3.N`` (default 3.0, ``latest`` = the maximum) and the answer names the
one used. Every rule lives in the services (``store.volume_api``, ``volume_snapshots``,
``volume_attachments``, ``quotas``); the responders here parse, call one method and render.
"""

from __future__ import annotations

import re
from typing import Any

import falcon

from provider.api.base import Api, read_json, send_json
from provider.api.errors import VersionNotAcceptable
from provider.errors import InvalidInput, PermissionDenied
from provider.services import Store

MIN_VERSION = (3, 0)
MAX_VERSION = (3, 60)
PREFIX = "/volume/v3/{project_id}"
HEADER = "OpenStack-API-Version"
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")
UPDATED = "2026-12-03T00:00:00Z"


def _text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def microversion(req: falcon.Request) -> tuple[int, int]:
    """The microversion ``req`` asks for (``OpenStack-API-Version: volume 3.N``)."""
    header = req.get_header(HEADER) or ""
    for part in header.split(","):
        service, _, value = part.strip().partition(" ")
        if service.lower() != "volume":
            continue
        value = value.strip().lower()
        if value == "latest":
            return MAX_VERSION
        match = _VERSION_RE.match(value)
        if not match:
            raise InvalidInput("malformed %(h)s header %(v)r (expected volume 3.N)", h=HEADER, v=value)
        asked = (int(match.group(1)), int(match.group(2)))
        if not MIN_VERSION <= asked <= MAX_VERSION:
            raise VersionNotAcceptable(
                service="volume", asked=value, low=_text(MIN_VERSION), high=_text(MAX_VERSION)
            )
        return asked
    return MIN_VERSION


def version_document(base_url: str) -> dict[str, Any]:
    return {
        "id": "v3.0",
        "status": "CURRENT",
        "version": _text(MAX_VERSION),
        "min_version": _text(MIN_VERSION),
        "updated": UPDATED,
        "links": [{"rel": "self", "href": f"{base_url}/volume/v3/"}],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}
        ],
    }


class Versions:
    """``GET /volume`` (300, every version) and ``GET /volume/v3`` (200, this one); no token needed."""

    def __init__(self, api: Api, single: bool) -> None:
        self.api, self.single = api, single

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        doc = version_document(self.api.config.api.base_url)
        if self.single:
            send_json(resp, {"version": doc, "versions": [doc]}, 200)
        else:
            send_json(resp, {"versions": [doc]}, 300)


class VolumeResource:
    """What every Volume API responder shares: the caller's store, the project check, microversions."""

    min_version = MIN_VERSION

    def __init__(self, api: Api) -> None:
        self.api = api

    def begin(
        self, req: falcon.Request, resp: falcon.Response, project_id: str
    ) -> tuple[Store, tuple[int, int]]:
        version = microversion(req)
        resp.set_header(HEADER, f"volume {_text(version)}")
        resp.append_header("Vary", HEADER)
        if version < self.min_version:
            raise falcon.HTTPNotFound(
                title="Not Found",
                description=f"{req.path} needs volume API version {_text(self.min_version)} or later",
            )
        store = self.api.store_for(req)
        if project_id != store.caller.name and not store.caller.admin:
            raise PermissionDenied(
                reason=f"the token is scoped to project {store.caller.name}, not {project_id}"
            )
        return store, version

    def base(self, project_id: str) -> str:
        return f"{self.api.config.api.base_url}/volume/v3/{project_id}"

    def body(self, req: falcon.Request, key: str) -> dict[str, Any]:
        """The JSON object under ``key`` in the request body (400 when it is missing or not an object)."""
        data = read_json(req, self.api.config.api.max_request_body)
        if not isinstance(data, dict) or not isinstance(data.get(key), dict):
            raise InvalidInput("the request body must be a JSON object with a %(key)r object", key=key)
        return data[key]

    def json_object(self, req: falcon.Request) -> dict[str, Any]:
        """An action's body: a JSON object with exactly one key (the action)."""
        data = read_json(req, self.api.config.api.max_request_body)
        if not isinstance(data, dict) or len(data) != 1:
            raise InvalidInput("an action body is a JSON object with exactly one action")
        return data


def sort_params(req: falcon.Request) -> tuple[str, str]:
    """``sort=key:dir`` (first key only) or ``sort_key``/``sort_dir``; newest first by default.
    ``display_name`` is Cinder's other name of ``name`` (what cinderclient sends for ``--sort name``)."""
    sort = req.get_param("sort")
    if sort:
        key, _, direction = sort.split(",")[0].partition(":")
        key, direction = key.strip(), (direction or "desc").strip()
    else:
        key, direction = req.get_param("sort_key") or "created_at", req.get_param("sort_dir") or "desc"
    return ("name" if key == "display_name" else key), direction


def as_int(value: Any, what: str) -> int:
    """A whole number, from JSON or a query string (Cinder accepts ``"10"`` for 10)."""
    if isinstance(value, bool):
        raise InvalidInput("%(what)s must be a whole number", what=what)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise InvalidInput("%(what)s must be a whole number, not %(v)r", what=what, v=value)


def as_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", "none", ""):
        return False
    raise InvalidInput("%(what)s must be true or false, not %(v)r", what=what, v=value)


def optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput("%(key)s must be a string", key=key)
    return value


def register(api: Api) -> None:
    from provider.api import volume_messages, volume_meta, volume_others, volume_volumes

    for service_type in ("block-storage", "volumev3"):
        api.catalog_entry(service_type, "cinderv3", PREFIX)
    api.route("/volume", Versions(api, single=False), public=True)
    api.route("/volume/v3", Versions(api, single=True), public=True)
    volume_volumes.register(api)
    volume_others.register(api)
    volume_messages.register(api)
    volume_meta.register(api)
