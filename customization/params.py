"""Instance parameters (what snf-image's OS parameters carry), validated when they are built."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from customization.errors import ParameterError
from customization.properties import parse_users

_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_HASH_RE = re.compile(r"^\$(?:1|5|6|2[abxy]|y|gy|7|sha1)\$[./A-Za-z0-9$=,]+$")
_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
)
_OWNER_RE = re.compile(r"^(?:[0-9]{1,10}|[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?)$")
MAX_FILE_BYTES = 16 * 1024 * 1024


class Secret:
    """A string that never shows itself in repr(), str(), logs or tracebacks; ``reveal()`` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise ParameterError("a secret must be a string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('******')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


def check_hostname(name: str) -> str:
    """An RFC 1123 host name (a single label or an FQDN)."""
    if not name or len(name) > 253 or name.endswith("."):
        raise ParameterError(f"hostname {name!r} is not valid (1-253 characters, no trailing dot)")
    if not all(_LABEL_RE.match(label) for label in name.split(".")):
        raise ParameterError(
            f"hostname {name!r} is not valid (letters, digits and '-' per label, at most 63 per label)"
        )
    return name


def check_password_hash(value: str) -> str:
    if not _HASH_RE.match(value) or len(value) > 512:
        raise ParameterError("the password hash is not a crypt(3) hash such as $6$... or $y$...")
    return value


def check_ssh_key(line: str) -> str:
    """One authorized_keys line: an optional options field, a key type, a base64 blob and a comment."""
    text = line.strip()
    if not text or "\n" in text or "\r" in text or "\0" in text:
        raise ParameterError("an SSH public key must be one non-empty line")
    fields = text.split()
    for i, word in enumerate(fields[:2]):
        if word in _KEY_TYPES and i + 1 < len(fields):
            try:
                blob = base64.b64decode(fields[i + 1], validate=True)
            except (binascii.Error, ValueError) as e:
                raise ParameterError(f"SSH key of type {word}: the key data is not base64") from e
            if not blob.startswith(len(word.encode()).to_bytes(4, "big") + word.encode()):
                raise ParameterError(f"SSH key of type {word}: the key data does not match its type")
            return text
    raise ParameterError(f"not an SSH public key (expected one of: {', '.join(_KEY_TYPES[:3])}, ...)")


@dataclass(frozen=True)
class InjectedFile:
    """A personality file: absolute guest path, content, owner, group (names or ids) and mode."""

    path: str
    content: bytes
    owner: str = "root"
    group: str = "root"
    mode: int = 0o440

    def __post_init__(self) -> None:
        p = self.path
        if not p.startswith("/") or "\0" in p or p.endswith("/") or len(p) > 4096:
            raise ParameterError(f"injected file path {p!r} must be an absolute file path")
        if any(part in ("", ".", "..") for part in p.split("/")[1:]):
            raise ParameterError(f"injected file path {p!r} must not contain '.', '..' or '//'")
        if not isinstance(self.content, bytes) or len(self.content) > MAX_FILE_BYTES:
            raise ParameterError(f"injected file {p}: content must be bytes, at most {MAX_FILE_BYTES} bytes")
        for what, value in (("owner", self.owner), ("group", self.group)):
            if not _OWNER_RE.match(value):
                raise ParameterError(f"injected file {p}: {what} {value!r} is not a name or a numeric id")
        if not 0 <= self.mode <= 0o7777:
            raise ParameterError(f"injected file {p}: mode {self.mode:o} is out of range")

    def __repr__(self) -> str:  # contents may be secret: show only their size
        size = len(self.content)
        return f"InjectedFile({self.path!r}, {size} bytes, {self.owner}:{self.group}, {self.mode:o})"


def personality_from_json(text: str) -> tuple[InjectedFile, ...]:
    """snf-image's img_personality: a JSON list of {path, contents (base64), owner, group, mode (decimal)}."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise ParameterError(f"personality is not valid JSON: {e.msg}") from e
    if not isinstance(items, list):
        raise ParameterError("personality must be a JSON list of file objects")
    files = []
    for item in items:
        if not isinstance(item, dict) or "path" not in item or "contents" not in item:
            raise ParameterError("each personality entry needs 'path' and 'contents'")
        try:
            content = base64.b64decode(item["contents"], validate=True)
        except (binascii.Error, ValueError, TypeError) as e:
            raise ParameterError(f"personality {item['path']}: contents are not base64") from e
        mode = item.get("mode", 0o440)
        if not isinstance(mode, int):
            raise ParameterError(
                f"personality {item['path']}: mode must be an integer (decimal, as in snf-image)"
            )
        files.append(
            InjectedFile(
                str(item["path"]),
                content,
                str(item.get("owner", "root")),
                str(item.get("group", "root")),
                mode,
            )
        )
    return tuple(files)


@dataclass(frozen=True)
class InstanceParams:
    """What the instance asks for. Every field is optional; an absent field disables its task."""

    hostname: str | None = None
    password: Secret | None = None  # plaintext, hashed here with PASSWD_HASHING_METHOD
    password_hash: str | None = None  # a ready crypt hash ($6$/$y$/...)
    ssh_keys: tuple[str, ...] = ()
    files: tuple[InjectedFile, ...] = ()  # personality
    users: tuple[str, ...] | None = None  # overrides the image's USERS
    properties: Mapping[str, str] = field(
        default_factory=dict
    )  # snf-image inst_properties: override the image's

    def __post_init__(self) -> None:
        if self.hostname is not None:
            check_hostname(self.hostname)
        if self.password is not None and not isinstance(self.password, Secret):
            raise ParameterError("password must be wrapped in customization.params.Secret")
        if self.password is not None and self.password_hash is not None:
            raise ParameterError("give either a password or a password hash, not both")
        if self.password is not None and ("\n" in self.password.reveal() or "\0" in self.password.reveal()):
            raise ParameterError("the password must not contain a newline or NUL character")
        if self.password_hash is not None:
            check_password_hash(self.password_hash)
        for key in self.ssh_keys:
            check_ssh_key(key)
        seen = set()
        for item in self.files:
            if not isinstance(item, InjectedFile):
                raise ParameterError("files must be InjectedFile objects")
            if item.path in seen:
                raise ParameterError(f"injected file {item.path} is given twice")
            seen.add(item.path)
        if self.users is not None:
            parse_users(" ".join(self.users))  # one rule for USERS, wherever it comes from

    def effective_properties(self, image_properties: Mapping[str, object]) -> dict[str, object]:
        """Image properties with the instance's overrides applied (inst_properties, then users)."""
        merged: dict[str, object] = {k.upper(): v for k, v in image_properties.items()}
        merged.update({k.upper(): v for k, v in self.properties.items()})
        if self.users is not None:
            merged["USERS"] = " ".join(self.users)
        return merged
