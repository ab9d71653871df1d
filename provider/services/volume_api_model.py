"""What the Volume API shows (VolumeInfo) and how it validates what clients send: sizes, metadata (never
a secret: it is readable) and the hostname a new volume's customization sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from provider.errors import InvalidInput, NotFound, PermissionDenied
from provider.services.image_records import ImageRecord
from provider.services.volume_api_attachments import AttachmentInfo
from provider.utils.host import HOST, now
from provider.utils.names import check_key, check_value

HOSTNAME_KEY = "hostname"
# Volume metadata is readable by anyone who reads the volume: nothing secret may travel through it.
SECRET_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "credential",
    "private",
    "ssh_key",
    "sshkey",
    "ssh-key",
    "authorized_key",
    "personality",
    "img_passwd",
)
STATUSES = ("available", "attaching", "in-use", "error")
# The one volume type (every volume is a thin copy-on-write volume of the store), with a fixed id.
VOLUME_TYPE = "atoll"
VOLUME_TYPE_ID = "494a3286-65c5-5015-beb1-175847b4fffe"
AVAILABILITY_ZONE = "nova"  # the zone name OpenStack clients expect by default
SORT_KEYS = ("created_at", "name", "size", "id", "status")
MAX_GIB = 1 << 20  # 1 PiB


@dataclass(frozen=True)
class VolumeInfo:
    """What the Volume API shows of one volume (``size`` in bytes)."""

    id: str
    name: str
    size: int
    status: str
    owner: str
    created_at: str
    updated_at: str | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    image_id: str | None = None
    snapshot_id: str | None = None
    source_volid: str | None = None
    attachments: tuple[AttachmentInfo, ...] = ()
    error: str | None = None
    bootable_flag: str | None = None  # "true"/"false" as set by os-set_bootable; else: made from an image
    readonly_flag: str | None = None  # "true"/"false" as set by os-update_readonly_flag; else: read-write
    image_meta: dict[str, str] | None = None  # Cinder's volume_image_metadata, kept at creation

    @property
    def bootable(self) -> bool:
        return self.image_id is not None if self.bootable_flag is None else self.bootable_flag == "true"

    @property
    def readonly(self) -> bool:
        return self.readonly_flag == "true"


def image_metadata(rec: ImageRecord, properties: dict[str, str]) -> dict[str, str]:
    """What Cinder keeps of the image a volume was made from (``volume_image_metadata``, strings): the
    image's attributes and the ``properties`` its reader may see, as they were at the volume's creation
    (Nova reads its boot settings there; the image may change or go later)."""
    g = rec.glance
    meta = {
        **properties,
        "image_name": rec.name,
        "disk_format": rec.disk_format,
        "container_format": rec.container_format,
        "min_disk": str(g["min_disk"]),
        "min_ram": str(g["min_ram"]),
        "size": str(rec.size),
    }
    if g["checksum"]:
        meta["checksum"] = g["checksum"]
    return meta


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, str]:
    """Validate volume metadata: string keys and values, and no secret (it is readable)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInput("volume metadata must be an object of string keys and values")
    clean: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidInput("volume metadata %(key)r: keys and values must be strings", key=key)
        check_key(key, "metadata key")
        if any(word in key.lower() for word in SECRET_WORDS):
            raise InvalidInput(
                "volume metadata %(key)r looks like a secret: metadata is readable by anyone who can read "
                "the volume, so passwords, keys and tokens are never accepted there",
                key=key,
            )
        clean[key] = check_value(key, value)
    return clean


def check_size(size_gib: Any) -> int:
    if not isinstance(size_gib, int) or isinstance(size_gib, bool) or not 0 < size_gib <= MAX_GIB:
        raise InvalidInput("volume size must be a whole number of GiB from 1 to %(max)d", max=MAX_GIB)
    return size_gib


def hostname_for(name: str, metadata: dict[str, str]) -> str | None:
    """The hostname to set: metadata ``hostname`` (must be valid), else the volume's name when it is one."""
    from customization.errors import CustomizationError
    from customization.params import check_hostname

    if HOSTNAME_KEY in metadata:
        try:
            return check_hostname(metadata[HOSTNAME_KEY])
        except CustomizationError as e:
            raise InvalidInput(str(e)) from e
    try:
        return check_hostname(name)
    except CustomizationError:
        return None


def check_volume_type(value: Any) -> None:
    """A volume type a client names (by name or id) must be Atoll's one type; 404 otherwise, as Cinder."""
    if value is not None and value not in (VOLUME_TYPE, VOLUME_TYPE_ID):
        raise NotFound(what="volume type", ref=str(value))


def check_availability_zone(value: Any) -> None:
    if value is not None and value != AVAILABILITY_ZONE:
        raise InvalidInput(
            "availability zone %(z)r does not exist (there is one: %(one)s)", z=value, one=AVAILABILITY_ZONE
        )


@dataclass(frozen=True)
class ServiceInfo:
    binary: str
    host: str
    zone: str
    updated_at: str


def volume_services(admin: bool) -> list[ServiceInfo]:
    """Cinder's ``os-services`` (admins only): this server's volume service, up while it answers."""
    if not admin:
        raise PermissionDenied(reason="only an admin may list the volume services")
    return [ServiceInfo("cinder-volume", f"{HOST}@{VOLUME_TYPE}", AVAILABILITY_ZONE, now())]
