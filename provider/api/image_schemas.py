"""The JSON schemas python-glanceclient fetches (``/v2/schemas/…``) to build and validate its models.

Written from the Image API v2 reference: every core attribute with its type (null where Glance allows
it), and custom properties as strings (``additionalProperties``).
"""

from __future__ import annotations

from typing import Any

import falcon

from provider.api.base import Api, send_json
from provider.services.glance import CONTAINER_FORMATS, DISK_FORMATS
from provider.services.image_members import STATUSES

IMAGE_STATUSES = [
    "queued",
    "saving",
    "active",
    "killed",
    "deleted",
    "uploading",
    "importing",
    "pending_delete",
    "deactivated",
]


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": ["null", kind], **extra}


def image_schema() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "name": "image",
        "properties": {
            "id": {
                "type": "string",
                "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
                "-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$",
            },
            "name": _nullable("string", maxLength=255),
            "status": {"type": "string", "enum": IMAGE_STATUSES, "readOnly": True},
            "visibility": {"type": "string", "enum": ["community", "public", "private", "shared"]},
            "protected": {"type": "boolean"},
            "os_hidden": {"type": "boolean"},
            "checksum": _nullable("string", maxLength=32, readOnly=True),
            "os_hash_algo": _nullable("string", maxLength=64, readOnly=True),
            "os_hash_value": _nullable("string", maxLength=128, readOnly=True),
            "owner": _nullable("string", maxLength=255),
            "size": _nullable("integer", readOnly=True),
            "virtual_size": _nullable("integer", readOnly=True),
            "container_format": _nullable("string", enum=[None, *CONTAINER_FORMATS]),
            "disk_format": _nullable("string", enum=[None, *DISK_FORMATS]),
            "created_at": {**text, "readOnly": True},
            "updated_at": {**text, "readOnly": True},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}},
            "direct_url": {**text, "readOnly": True},
            "min_ram": {"type": "integer"},
            "min_disk": {"type": "integer"},
            "self": {**text, "readOnly": True},
            "file": {**text, "readOnly": True},
            "schema": {**text, "readOnly": True},
            "locations": {"type": "array", "items": {"type": "object"}},
            "stores": {**text, "readOnly": True},
        },
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def member_schema() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "name": "member",
        "properties": {
            "created_at": text,
            "updated_at": text,
            "image_id": text,
            "member_id": text,
            "schema": {**text, "readOnly": True},
            "status": {"type": "string", "enum": list(STATUSES)},
        },
    }


SCHEMAS = {
    "image": image_schema,
    "member": member_schema,
    "images": lambda: {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    },
    "members": lambda: {
        "name": "members",
        "properties": {"members": {"type": "array", "items": member_schema()}, "schema": {"type": "string"}},
        "links": [{"rel": "describedby", "href": "{schema}"}],
    },
}


class Schema:
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        if name not in SCHEMAS:
            raise falcon.HTTPNotFound(description=f"no schema {name!r}")
        send_json(resp, SCHEMAS[name]())


def register(api: Api) -> None:
    api.route("/v2/schemas/{name}", Schema())
