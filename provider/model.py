"""Atoll's domain model: the resource (one row plus its views; the kind is derived) and the attachment
(the typed result of attaching a resource on a host)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sqlalchemy import Row

from provider.utils.props import is_snapshot

KINDS = ("object", "image", "snapshot", "volume")


@dataclass(frozen=True)
class ObjectView:
    container: str
    name: str
    content_type: str
    meta: dict[str, str]
    created_at: str

    @property
    def path(self) -> str:
        return f"{self.container}/{self.name}"


@dataclass(frozen=True)
class ImageView:
    name: str
    owner: str
    visibility: str
    status: str
    disk_format: str
    container_format: str
    properties: dict[str, str]
    created_at: str
    updated_at: str
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class VolumeView:
    name: str
    status: str
    ganeti: dict[str, Any]
    created_at: str


@dataclass(frozen=True)
class Resource:
    id: str
    size: int
    mode: str
    backend: str
    locator: str
    disk_format: str
    parent: str | None
    state: str
    sha256: str | None
    owner: str
    created_at: str
    updated_at: str
    object: ObjectView | None = None
    image: ImageView | None = None
    volume: VolumeView | None = None
    op: str | None = None
    op_pid: int | None = None
    op_data: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """RW → volume; RO with an image view → snapshot if EXCLUDE_ALL_TASKS, else image; RO → object."""
        if self.mode == "rw":
            return "volume"
        if self.image is not None:
            return "snapshot" if is_snapshot(self.image.properties) else "image"
        return "object"

    @property
    def name(self) -> str:
        if self.volume:
            return self.volume.name
        if self.image:
            return self.image.name
        if self.object:
            return self.object.path
        return self.id

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "size": self.size,
            "mode": self.mode,
            "parent": self.parent,
            "backend": self.backend,
            "disk_format": self.disk_format,
            "sha256": self.sha256,
            "owner": self.owner,
            "state": self.state,
            "created_at": self.created_at,
        }
        if self.object:
            data["object"] = {
                "container": self.object.container,
                "name": self.object.name,
                "content_type": self.object.content_type,
                "meta": self.object.meta,
            }
        if self.image:
            data["image"] = {
                "name": self.image.name,
                "owner": self.image.owner,
                "visibility": self.image.visibility,
                "status": self.image.status,
                "disk_format": self.image.disk_format,
                "container_format": self.image.container_format,
                "properties": self.image.properties,
                "members": list(self.image.members),
            }
        if self.volume:
            data["volume"] = {
                "name": self.volume.name,
                "status": self.volume.status,
                "ganeti": self.volume.ganeti,
            }
        return data


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else {}


def build(
    row: Row[Any], obj: Row[Any] | None, img: Row[Any] | None, vol: Row[Any] | None, members: tuple[str, ...]
) -> Resource:
    m = row._mapping
    return Resource(
        id=m["id"],
        size=m["size"],
        mode=m["mode"],
        backend=m["backend"],
        locator=m["locator"],
        disk_format=m["disk_format"],
        parent=m["parent"],
        state=m["state"],
        sha256=m["sha256"],
        owner=m["owner"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        op=m["op"],
        op_pid=m["op_pid"],
        op_data=_loads(m["op_data"]),
        object=ObjectView(
            container=obj.container,
            name=obj.name,
            content_type=obj.content_type,
            meta=_loads(obj.meta),
            created_at=obj.created_at,
        )
        if obj
        else None,
        image=ImageView(
            name=img.name,
            owner=img.owner,
            visibility=img.visibility,
            status=img.status,
            disk_format=img.disk_format,
            container_format=img.container_format,
            properties=_loads(img.properties),
            created_at=img.created_at,
            updated_at=img.updated_at,
            members=members,
        )
        if img
        else None,
        volume=VolumeView(
            name=vol.name, status=vol.status, ganeti=_loads(vol.ganeti), created_at=vol.created_at
        )
        if vol
        else None,
    )


# ---- attachments -----------------------------------------------------------------------------------
Mode = Literal["ro", "rw"]
Access = Literal["kernelspace", "userspace"]
Kind = Literal["block", "file", "nbd", "rbd"]
MODES = ("ro", "rw")
ACCESSES = ("kernelspace", "userspace")


@dataclass(frozen=True)
class Attachment:
    """One resource attached on one host.

    ``device`` is a block device path (kernelspace), ``uri`` what QEMU opens (userspace: ``nbd:unix:…``
    or a raw file path). ``path`` is the file behind the device (the data file, or a daemon's FUSE
    export); ``daemon_dir`` holds a supervised daemon's pid file, QMP socket and FUSE file;
    ``socket_dir`` its unix sockets (``daemon_dir`` unless that path is too long for a socket name).
    """

    resource_id: str
    mode: Mode
    access: Access
    kind: Kind
    device: str | None
    uri: str | None
    host: str
    path: str | None = None
    daemon_dir: str | None = None
    socket_dir: str | None = None

    @property
    def readonly(self) -> bool:
        return self.mode == "ro"

    @property
    def lines(self) -> list[str]:
        """What ``atoll volume attach`` prints: the device and/or the URI, one per line."""
        return [x for x in (self.device, self.uri) if x]

    def state(self) -> dict[str, Any]:
        """The fields detach needs beyond the indexed ones (stored as JSON in the catalog)."""
        return {"path": self.path, "daemon_dir": self.daemon_dir, "socket_dir": self.socket_dir}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
