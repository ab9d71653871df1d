"""libvirt ``<disk>`` XML for an attachment, rendered from ``provider/templates/disk_<kind>.xml.j2``."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import jinja2

from provider.config import LibvirtConfig
from provider.errors import BadConfiguration, InvalidInput
from provider.model import Attachment

CHOICES = {
    "cache": ("default", "none", "writethrough", "writeback", "directsync", "unsafe"),
    "io": ("default", "native", "threads", "io_uring"),
    "discard": ("default", "unmap", "ignore"),
}
_TARGET_RE = re.compile(r"^(vd|sd|hd|xvd)[a-z]{1,3}$")
_BUS = {"vd": "virtio", "sd": "scsi", "hd": "ide", "xvd": "xen"}


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("provider", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        keep_trailing_newline=True,
    )


def driver_options(cfg: LibvirtConfig) -> dict[str, str]:
    options = {"cache": cfg.cache, "io": cfg.io, "discard": cfg.discard}
    for key, value in options.items():
        if value not in CHOICES[key]:
            raise BadConfiguration(reason=f"libvirt.{key} {value!r} is not one of {', '.join(CHOICES[key])}")
    if cfg.io == "native" and cfg.cache not in ("none", "directsync"):
        raise BadConfiguration(reason="libvirt.io native needs libvirt.cache none or directsync")
    return options


def parse_rbd_uri(uri: str) -> dict[str, Any]:
    """``rbd:POOL/IMAGE[@SNAP][:id=USER][:mon_host=H1\\;H2]`` (QEMU's legacy syntax) → template fields."""
    body = uri.removeprefix("rbd:")
    parts = re.split(r"(?<!\\):", body)
    fields: dict[str, Any] = {"image": parts[0], "user": None, "hosts": []}
    for part in parts[1:]:
        key, _, value = part.partition("=")
        if key == "id":
            fields["user"] = value
        elif key == "mon_host":
            for host in re.split(r"\\?;", value.replace("\\:", ":")):
                name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
                fields["hosts"].append({"name": name, "port": port})
    return fields


def disk_xml(att: Attachment, cfg: LibvirtConfig, target: str = "vda", secret_uuid: str | None = None) -> str:
    """A ``<disk>`` element for ``att``: ``block`` (the device), ``file`` (the raw file), ``nbd`` (the
    daemon's unix socket) or ``rbd``; driver options come from ``cfg`` (``libvirt:`` in the config)."""
    match = _TARGET_RE.match(target)
    if not match:
        raise InvalidInput("invalid disk target %(target)r (e.g. vda, sdb)", target=target)
    bus = _BUS[match.group(1)]
    fields: dict[str, Any] = {
        **driver_options(cfg),
        "target": target,
        "bus": bus,
        "readonly": att.readonly,
    }
    if att.kind == "block":
        fields["device"] = att.device
    elif att.kind == "file":
        fields["path"] = att.uri
    elif att.kind == "nbd":
        fields["socket"] = (att.uri or "").removeprefix("nbd:unix:").split(":exportname=")[0]
    else:
        fields.update(parse_rbd_uri(att.uri or ""))
        fields["secret_uuid"] = secret_uuid
        fields["secret_usage"] = f"client.{fields['user']} secret"
    return _env().get_template(f"disk_{att.kind}.xml.j2").render(**fields)
