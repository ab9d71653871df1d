"""The OS parameters (``OSP_*``) of OS ``atoll``, named as snf-image names them, parsed and validated.

Secrets (``img_passwd``) are wrapped in :class:`customization.params.Secret` at once and no message
here ever quotes a parameter's value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from customization import properties as schema
from customization.errors import ParameterError
from customization.params import InstanceParams, Secret, personality_from_json

API_VERSION = 20
VARIANTS = ("default",)
PARAMETERS = (
    ("img_id", "image to copy onto a disk that is not an Atoll clone (file, plain, drbd); optional on ext"),
    ("img_format", "diskdump, the only format (accepted for snf-image compatibility)"),
    ("img_passwd", "password for the image's USERS; pass it with --os-parameters-secret"),
    ("img_passwd_hash", "crypt(3) hash ($6$..., $y$...) for USERS instead of img_passwd"),
    ("img_properties", "JSON object of image properties, over those of the disk's origin"),
    ("inst_properties", "JSON object of properties that override the image's for this instance"),
    ("img_personality", "JSON list of files to inject: {path, contents (base64), owner, group, mode}"),
    ("auth_keys", "SSH public keys (authorized_keys lines, one per line) for USERS"),
    ("hostname", "host name of the guest (default: the instance name)"),
)
FORMATS = ("diskdump",)


@dataclass(frozen=True)
class OsRequest:
    """What the OS parameters ask for: the image to copy (if any), extra properties, instance params."""

    img_id: str | None
    img_properties: dict[str, str] = field(default_factory=dict)
    params: InstanceParams = field(default_factory=InstanceParams)


def _osp(environ: Mapping[str, str], name: str) -> str | None:
    """``OSP_<NAME>``; a parameter given but empty counts as given (snf-image tests ``${VAR+x}``)."""
    return environ.get("OSP_" + name.upper().replace("-", "_"))


def _json_object(name: str, text: str | None) -> dict[str, str]:
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ParameterError(f"{name} is not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(data, dict):
        raise ParameterError(f"{name} must be a JSON object of property names to values")
    return {
        str(k): v if isinstance(v, str) else json.dumps(v) if isinstance(v, dict | list) else str(v)
        for k, v in data.items()
    }


def _keys(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    lines = (line.strip() for line in text.replace("\\n", "\n").splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def parse(environ: Mapping[str, str], hostname: str | None) -> OsRequest:
    """Build the request from ``OSP_*``; raise ParameterError/PropertyError with one line, no values."""
    fmt = _osp(environ, "img_format")
    if fmt and fmt.strip().lower() not in FORMATS:
        raise ParameterError(f"img_format {fmt!r} is not supported (use {', '.join(FORMATS)})")
    img_props = _json_object("img_properties", _osp(environ, "img_properties"))
    inst_props = _json_object("inst_properties", _osp(environ, "inst_properties"))
    schema.validate({**img_props, **inst_props})  # fail before touching any disk
    passwd = _osp(environ, "img_passwd")
    passwd_hash = _osp(environ, "img_passwd_hash")
    if passwd is not None and passwd_hash is not None:
        raise ParameterError("give either img_passwd or img_passwd_hash, not both")
    personality = _osp(environ, "img_personality")
    params = InstanceParams(
        hostname=_osp(environ, "hostname") or hostname,
        password=Secret(passwd) if passwd else None,
        password_hash=passwd_hash or None,
        ssh_keys=_keys(_osp(environ, "auth_keys")),
        files=personality_from_json(personality) if personality and personality.strip() else (),
        properties=inst_props,
    )
    img_id = (_osp(environ, "img_id") or "").strip() or None
    if img_id == "null":  # snf-image: "skip the copy, only customize"
        img_id = None
    return OsRequest(img_id=img_id, img_properties=img_props, params=params)
