"""Glance v2 wire format: image records to JSON, list queries and JSON patches from requests."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import falcon

from provider.errors import InvalidInput, PermissionDenied
from provider.services import Store
from provider.services.image_list import EQUAL_FILTERS, ImageQuery
from provider.services.image_records import ImageRecord
from provider.services.protections import readable

CORE = (
    "name",
    "visibility",
    "protected",
    "os_hidden",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
)
READ_ONLY = (
    "id",
    "status",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "size",
    "virtual_size",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    "direct_url",
    "locations",
    "owner",
    "stores",
)
PATCH_TYPES = ("application/openstack-images-v2.1-json-patch", "application/openstack-images-v2.0-json-patch")
LIST_PARAMS = (
    "limit",
    "marker",
    "sort_key",
    "sort_dir",
    "sort",
    "visibility",
    "member_status",
    "tag",
    "size_min",
    "size_max",
    "os_hidden",
)


def render(store: Store, rec: ImageRecord) -> dict[str, Any]:
    """The image as Glance shows it: readable custom properties, then the core attributes over them.
    (Built as one literal: a list of 1,000 images renders each of them.)"""
    g, rid = rec.glance, rec.id
    core: dict[str, Any] = {
        "id": rid,
        "name": None if rec.name == rid else rec.name,
        "status": rec.status,
        "visibility": rec.api_visibility,
        "protected": bool(g["protected"]),
        "os_hidden": bool(g["os_hidden"]),
        "checksum": g["checksum"],
        "os_hash_algo": g["os_hash_algo"],
        "os_hash_value": g["os_hash_value"],
        "size": rec.size,
        "virtual_size": g["virtual_size"] if g["virtual_size"] is not None else rec.size,
        "disk_format": rec.disk_format,
        "container_format": rec.container_format,
        "min_disk": g["min_disk"],
        "min_ram": g["min_ram"],
        "owner": rec.owner,
        "created_at": rec.created_at[:19] + "Z",
        "updated_at": rec.updated_at[:19] + "Z",
        "tags": list(rec.tags),
        "self": f"/v2/images/{rid}",
        "file": f"/v2/images/{rid}/file",
        "schema": "/v2/schemas/image",
    }
    if not rec.properties:
        return core
    data: dict[str, Any] = readable(store.config.images, store.caller, rec.properties)
    if rec.is_snapshot:
        data.setdefault("image_type", "snapshot")
        data.update({k: v for k, v in store.glance.lineage(rec).items() if k not in data})
    data.update(core)
    return data


def split_create(body: Any) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """POST /v2/images body → (core fields, custom properties, tags)."""
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    fields: dict[str, Any] = {}
    props: dict[str, str] = {}
    tags = body.get("tags") or []
    if not isinstance(tags, list):
        raise InvalidInput("tags must be a list of strings")
    for key, value in body.items():
        if key == "tags":
            continue
        if key == "id":
            fields["id"] = str(value)
        elif key in READ_ONLY:
            raise PermissionDenied(reason=f"attribute {key!r} is read-only")
        elif key in CORE:
            fields[key] = value
        elif isinstance(value, str):
            props[key] = value
        else:
            raise InvalidInput("property %(key)s must be a string", key=key)
    return fields, props, tags


def parse_patch(
    body: Any, rec: ImageRecord
) -> tuple[dict[str, Any], dict[str, str], list[str], list[str] | None]:
    """A JSON patch → (core changes, properties to set, properties to remove, new tag list or None)."""
    if not isinstance(body, list):
        raise InvalidInput("a JSON patch is a list of operations")
    changes: dict[str, Any] = {}
    props: dict[str, str] = {}
    removed: list[str] = []
    tags: list[str] | None = None
    for op in body:
        if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove"):
            raise InvalidInput("unknown JSON patch operation %(op)r: use add, replace or remove", op=op)
        path = op.get("path")
        if not isinstance(path, str) or not path.startswith("/") or len(path) < 2:
            raise InvalidInput("JSON patch path %(p)r is not of the form /attribute", p=path)
        key = path[1:].replace("~1", "/").replace("~0", "~")
        key = key.removeprefix("properties/")
        if op["op"] != "remove" and "value" not in op:
            raise InvalidInput("JSON patch operation %(op)s on %(p)s needs a value", op=op["op"], p=path)
        value = op.get("value")
        if key in READ_ONLY:
            raise PermissionDenied(reason=f"attribute {key!r} is read-only")
        if key == "tags":
            if op["op"] == "remove" or not isinstance(value, list):
                raise InvalidInput("/tags takes a list (replace it); tags cannot be removed as a whole")
            tags = value
        elif key in CORE:
            if op["op"] == "remove":
                raise PermissionDenied(reason=f"attribute {key!r} cannot be removed")
            changes[key] = value
        elif op["op"] == "remove":
            removed.append(key)
        else:
            if not isinstance(value, str):
                raise InvalidInput("property %(key)s must be a string", key=key)
            props[key] = value
    return changes, props, removed, tags


def _int(req: falcon.Request, name: str) -> int | None:
    raw = req.get_param(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput("%(name)s must be an integer", name=name) from None


def parse_query(req: falcon.Request) -> ImageQuery:
    q = ImageQuery()
    limit = _int(req, "limit")
    q.limit = 25 if limit is None else limit
    q.marker = req.get_param("marker")
    q.visibility = req.get_param("visibility")
    q.member_status = req.get_param("member_status") or "accepted"
    q.tags = req.get_param_as_list("tag") or []
    q.size_min, q.size_max = _int(req, "size_min"), _int(req, "size_max")
    keys = req.get_param_as_list("sort_key") or []
    dirs = req.get_param_as_list("sort_dir") or []
    if req.get_param("sort"):
        pairs = [p.split(":", 1) for p in req.get_param("sort", default="").split(",") if p]
        q.sort = [(p[0].strip(), (p[1] if len(p) > 1 else "desc").strip()) for p in pairs]
    elif keys:
        q.sort = [
            (k, dirs[i] if i < len(dirs) else (dirs[-1] if dirs else "desc")) for i, k in enumerate(keys)
        ]
    for key, value in req.params.items():
        if key in LIST_PARAMS:
            continue
        if isinstance(value, list):
            raise InvalidInput("filter %(key)s is given more than once", key=key)
        if key in EQUAL_FILTERS:
            q.equal[key] = value
        else:
            q.properties[key] = value
    return q


def next_link(req: falcon.Request, last: str) -> str:
    params = [(k, v) for k, v in req.params.items() if k != "marker"]
    flat: list[tuple[str, str]] = []
    for k, v in params:
        flat.extend((k, x) for x in (v if isinstance(v, list) else [v]))
    flat.append(("marker", last))
    return "/v2/images?" + urlencode(flat)
