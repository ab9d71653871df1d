"""The ExtStorage environment Ganeti hands a provider script, parsed into one frozen dataclass."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from atoll_common.booleans import parse_bool
from provider.errors import UsageError
from provider.utils.names import check_name
from provider.utils.sizes import parse_size

MIB = 1 << 20
SNAP_SUFFIX = ".snap"
# The provider's own disk parameters (parameters.list); Ganeti adds "provider" and "access" itself.
PARAMETERS = (
    ("origin", "image, snapshot or object (id, name or CONTAINER/NAME) the volume is a thin clone of"),
    ("origin_size", "expected size of the origin in bytes (a guard: creation fails when it differs)"),
    ("reuse_data", "yes: adopt the existing volume named like the disk (VOL_CNAME) instead of creating one"),
)
GANETI_PARAMETERS = ("provider", "access")
_MIB_RE = re.compile(r"^[0-9]{1,12}$")


def mib(environ: Mapping[str, str], key: str) -> int | None:
    """``environ[key]`` (a whole number of MiB, as Ganeti passes sizes) in bytes; None when unset."""
    value = environ.get(key)
    if value is None or value == "":
        return None
    if not _MIB_RE.match(value.strip()):
        raise UsageError("%(key)s=%(value)r is not a whole number of MiB", key=key, value=value)
    return int(value.strip()) * MIB


@dataclass(frozen=True)
class ExtEnv:
    """``VOL_*`` and ``EXTP_*`` of one ExtStorage call; sizes are bytes (Ganeti speaks MiB)."""

    vol_name: str
    size: int | None = None
    new_size: int | None = None
    metadata: str | None = None
    cname: str | None = None
    uuid: str | None = None
    snapshot_name: str | None = None
    snapshot_size: int | None = None
    open_exclusive: bool | None = None
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> str | None:
        return self.params.get("origin") or None

    @property
    def origin_size(self) -> int | None:
        value = self.params.get("origin_size", "").strip()
        if not value or value == "-1":  # Archipelago's "unknown"
            return None
        return parse_size(value)

    @property
    def reuse_data(self) -> bool:
        return parse_bool(self.params.get("reuse_data"), key="reuse_data", strict=False)

    @property
    def userspace(self) -> bool:
        return self.params.get("access", "kernelspace").lower() == "userspace"

    @property
    def is_snapshot(self) -> bool:
        return self.vol_name.endswith(SNAP_SUFFIX)

    def check_params(self) -> None:
        """Refuse unknown disk parameters: Ganeti passes any key, and a typo (``orign=``) would
        otherwise quietly make an empty volume."""
        known = {name for name, _ in PARAMETERS} | set(GANETI_PARAMETERS)
        unknown = sorted(set(self.params) - known)
        if unknown:
            raise UsageError(
                "unknown disk parameter(s) %(unknown)s for provider atoll (known: %(known)s)",
                unknown=", ".join(unknown),
                known=", ".join(name for name, _ in PARAMETERS),
            )

    def identity(self) -> dict[str, Any]:
        """What the catalog keeps of Ganeti's view of the disk (found later by VOL_NAME)."""
        ident: dict[str, Any] = {"VOL_NAME": self.vol_name, "provider": self.params.get("provider", "atoll")}
        if self.cname:
            ident["VOL_CNAME"] = self.cname
        if self.uuid:
            ident["VOL_UUID"] = self.uuid
        if self.origin:
            ident["origin"] = self.origin
        return ident


def parse(environ: Mapping[str, str]) -> ExtEnv:
    """Parse and validate the ExtStorage variables; raise UsageError with one clear line."""
    vol_name = environ.get("VOL_NAME", "")
    if not vol_name:
        raise UsageError("VOL_NAME is not set: this script is meant to be run by Ganeti (see -h)")
    check_name(vol_name, "VOL_NAME")
    snapshot_name = environ.get("VOL_SNAPSHOT_NAME") or None
    if snapshot_name is not None:
        check_name(snapshot_name, "VOL_SNAPSHOT_NAME")
    exclusive = environ.get("VOL_OPEN_EXCLUSIVE")
    params = {k[len("EXTP_") :].lower(): v for k, v in environ.items() if k.startswith("EXTP_")}
    return ExtEnv(
        vol_name=vol_name,
        size=mib(environ, "VOL_SIZE"),
        new_size=mib(environ, "VOL_NEW_SIZE"),
        metadata=environ.get("VOL_METADATA"),
        cname=environ.get("VOL_CNAME") or None,
        uuid=environ.get("VOL_UUID") or None,
        snapshot_name=snapshot_name,
        snapshot_size=mib(environ, "VOL_SNAPSHOT_SIZE"),
        open_exclusive=None if exclusive is None else exclusive.strip().lower() == "true",
        params=params,
    )


def instance_of(metadata: str | None) -> str | None:
    """The instance name in Ganeti's ``VOL_METADATA`` (``originstname+<name>``), if it is there."""
    prefix = "originstname+"
    if metadata and metadata.startswith(prefix):
        return metadata[len(prefix) :] or None
    return None
