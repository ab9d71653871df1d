"""Image-property conventions shared with snf-image (well-known keys, case-insensitive lookup)."""

from __future__ import annotations

from collections.abc import Mapping

from atoll_common.booleans import parse_bool

EXCLUDE_ALL_TASKS = "EXCLUDE_ALL_TASKS"


def get_prop(properties: Mapping[str, str], key: str) -> str | None:
    """Property keys are case-insensitive (snf-image upper-cases them)."""
    upper = key.upper()
    for k, v in properties.items():
        if k.upper() == upper:
            return v
    return None


def is_snapshot(properties: Mapping[str, str]) -> bool:
    """Stored properties are read leniently: an unknown word counts as true (see atoll_common.booleans)."""
    return parse_bool(get_prop(properties, EXCLUDE_ALL_TASKS), key=EXCLUDE_ALL_TASKS, strict=False)
