"""Validation of user-chosen names, metadata keys and values."""

from __future__ import annotations

import re

from provider.errors import UsageError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+:@-]{0,127}$")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_VALUE = 4096


def check_name(name: str, what: str = "name") -> str:
    """A name starts with a letter or digit and holds letters, digits and ``. _ + : @ -`` (max 128)."""
    if not _NAME_RE.match(name or ""):
        raise UsageError(
            "invalid %(what)s %(name)r: use 1-128 letters, digits and . _ + : @ - (starting with a "
            "letter or digit)",
            what=what,
            name=name,
        )
    if UUID_RE.match(name):
        raise UsageError("invalid %(what)s %(name)r: a name must not look like an id", what=what, name=name)
    return name


def check_key(key: str, what: str = "key") -> str:
    if not _KEY_RE.match(key or ""):
        raise UsageError(
            "invalid %(what)s %(key)r: use letters, digits and _ . : - (starting with a letter or _)",
            what=what,
            key=key,
        )
    return key


def check_value(key: str, value: str) -> str:
    if len(value) > MAX_VALUE:
        raise UsageError("value of %(key)s is longer than %(max)d characters", key=key, max=MAX_VALUE)
    if any(ord(c) < 32 and c not in "\t" for c in value):
        raise UsageError("value of %(key)s holds control characters", key=key)
    return value


def parse_pairs(pairs: tuple[str, ...] | list[str], what: str = "property") -> dict[str, str]:
    """Turn ``["K=V", …]`` into a dict, validating each key and value."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError("invalid %(what)s %(pair)r: expected KEY=VALUE", what=what, pair=pair)
        result[check_key(key.strip(), what)] = check_value(key, value)
    return result


def split_object_ref(ref: str) -> tuple[str, str]:
    """``container/name`` → ``(container, name)``; the name may itself contain slashes."""
    container, sep, name = ref.partition("/")
    if not sep or not container or not name:
        raise UsageError("invalid object path %(ref)r: expected CONTAINER/NAME", ref=ref)
    check_name(container, "container")
    if name.startswith("/") or ".." in name.split("/") or any(ord(c) < 32 for c in name) or len(name) > 1024:
        raise UsageError("invalid object name %(name)r", name=name)
    return container, name
