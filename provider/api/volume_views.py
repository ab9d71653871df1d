"""How the Volume API renders volumes, snapshots, attachments and quota sets (Cinder v3's JSON shapes)."""

from __future__ import annotations

from typing import Any

from provider.services.quotas import QuotaSet, gib
from provider.services.volume_api_attachments import AttachmentInfo
from provider.services.volume_api_model import AVAILABILITY_ZONE, VOLUME_TYPE, VOLUME_TYPE_ID, VolumeInfo
from provider.services.volume_api_snapshots import SnapshotInfo

# Cinder quotas Atoll does not enforce are shown unlimited; Atoll's own (images, object_bytes) are added.
UNENFORCED = ("backups", "backup_gigabytes", "per_volume_gigabytes", "groups")


def stamp(value: str | None) -> str | None:
    """Catalog timestamps (…Z) in Cinder's form (``2026-12-03T08:00:00.000000``)."""
    return value.removesuffix("Z") if value else value


def _links(base: str, kind: str, rid: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": f"{base}/{kind}/{rid}"},
        {"rel": "bookmark", "href": f"{base}/{kind}/{rid}"},
    ]


def volume_attachment(att: AttachmentInfo) -> dict[str, Any]:
    """An attachment as listed inside a volume."""
    return {
        "id": att.volume_id,
        "attachment_id": att.id,
        "volume_id": att.volume_id,
        "server_id": att.instance_uuid,
        "host_name": att.host,
        "device": att.device or att.uri,
        "attached_at": stamp(att.created_at),
    }


def volume(v: VolumeInfo, base: str, *, detail: bool = True) -> dict[str, Any]:
    summary = {"id": v.id, "name": v.name, "links": _links(base, "volumes", v.id)}
    if not detail:
        return summary
    body: dict[str, Any] = {
        **summary,
        "status": v.status,
        "size": gib(v.size),
        "description": v.description,
        "metadata": v.metadata if v.readonly_flag is None else {**v.metadata, "readonly": str(v.readonly)},
        "created_at": stamp(v.created_at),
        "updated_at": stamp(v.updated_at),
        "availability_zone": AVAILABILITY_ZONE,
        "bootable": "true" if v.bootable else "false",
        "encrypted": False,
        "multiattach": False,
        "replication_status": None,
        "consistencygroup_id": None,
        "group_id": None,
        "volume_type": VOLUME_TYPE,
        "snapshot_id": v.snapshot_id,
        "source_volid": v.source_volid,
        "user_id": None,
        "os-vol-tenant-attr:tenant_id": v.owner,
        "attachments": [volume_attachment(a) for a in v.attachments if a.status != "reserved"],
    }
    if v.image_id:
        body["volume_image_metadata"] = {**(v.image_meta or {}), "image_id": v.image_id}
    if v.error:
        body["error_reason"] = v.error  # why creation failed (no volume was left behind)
    return body


def snapshot(s: SnapshotInfo, base: str, *, detail: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": s.id,
        "name": s.name,
        "status": s.status,
        "size": gib(s.size),
        "volume_id": s.volume_id,
        "description": s.description,
        "metadata": s.metadata,
        "created_at": stamp(s.created_at),
        "updated_at": stamp(s.updated_at),
    }
    if detail:
        body["os-extended-snapshot-attributes:project_id"] = s.owner
        body["os-extended-snapshot-attributes:progress"] = "100%"
    return body


def attachment(att: AttachmentInfo, connection_info: dict[str, Any] | None) -> dict[str, Any]:
    attached = None if att.status == "reserved" else stamp(att.created_at)
    return {
        "id": att.id,
        "status": att.status,
        "instance": att.instance_uuid,
        "volume_id": att.volume_id,
        "attached_at": attached,
        "attach_time": attached,
        "detached_at": None,
        "attach_mode": att.mode,
        "mode": att.mode,
        "connection_info": connection_info,
    }


def quota_set(q: QuotaSet, *, usage: bool = False) -> dict[str, Any]:
    def value(key: str) -> Any:
        limit = q.limits[key]
        return {"limit": limit, "in_use": q.usage[key], "reserved": 0, "allocated": 0} if usage else limit

    body: dict[str, Any] = {"id": q.project, **{key: value(key) for key in q.limits}}
    for key in UNENFORCED:
        body[key] = {"limit": -1, "in_use": 0, "reserved": 0, "allocated": 0} if usage else -1
    return body


def upload(v: VolumeInfo, image: Any, disk_format: str, container_format: str) -> dict[str, Any]:
    """The answer to ``os-volume_upload_image``: the image exists (and is active) at once, so the volume
    keeps its status (Cinder's ``uploading`` never shows)."""
    return {
        "id": v.id,
        "image_id": image.id,
        "image_name": image.name,
        "status": v.status,
        "size": gib(v.size),
        "display_description": v.description,
        "updated_at": stamp(v.updated_at),
        "disk_format": disk_format,
        "container_format": container_format,
        "volume_type": None,
        "visibility": image.image.visibility if image.image else "private",
        "protected": False,
    }


def volume_type() -> dict[str, Any]:
    return {
        "id": VOLUME_TYPE_ID,
        "name": VOLUME_TYPE,
        "description": "thin copy-on-write volumes of the Atoll store",
        "is_public": True,
        "os-volume-type-access:is_public": True,
        "extra_specs": {},
        "qos_specs_id": None,
    }


def limits(q: QuotaSet) -> dict[str, Any]:
    """Cinder's absolute limits from the project's quota set (backups: unlimited, none used)."""
    absolute = {
        "maxTotalVolumes": q.limits["volumes"],
        "totalVolumesUsed": q.usage["volumes"],
        "maxTotalSnapshots": q.limits["snapshots"],
        "totalSnapshotsUsed": q.usage["snapshots"],
        "maxTotalVolumeGigabytes": q.limits["gigabytes"],
        "totalGigabytesUsed": q.usage["gigabytes"],
        "maxTotalBackups": -1,
        "totalBackupsUsed": 0,
        "maxTotalBackupGigabytes": -1,
        "totalBackupGigabytesUsed": 0,
    }
    return {"limits": {"rate": [], "absolute": absolute}}


def summary(volumes: list[VolumeInfo]) -> dict[str, Any]:
    """Cinder's volume summary: how many, their GiB, and every metadata key with the values it has."""
    metadata: dict[str, list[str]] = {}
    for v in volumes:
        for key, value in v.metadata.items():
            if value not in metadata.setdefault(key, []):
                metadata[key].append(value)
    return {
        "total_count": len(volumes),
        "total_size": sum(gib(v.size) for v in volumes),
        "metadata": metadata,
    }
