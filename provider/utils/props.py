"""Image-property conventions shared with snf-image (boolean parsing, well-known keys)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

LOG = logging.getLogger(__name__)

EXCLUDE_ALL_TASKS = "EXCLUDE_ALL_TASKS"
_TRUE = {"yes", "true", "on", "1", "set"}
_FALSE = {"no", "false", "off", "0", "unset"}


def snf_bool(value: str | None) -> bool:
    """snf-image's ``check_yes_no``: yes/true/on/1/set are true, no/false/off/0/unset and empty are
    false, and any other value counts as true (with a warning), so existing images behave unchanged."""
    if value is None:
        return False
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE or text == "":
        return False
    LOG.warning("boolean property value %r is not yes/no; treated as true", value)
    return True


def get_prop(properties: Mapping[str, str], key: str) -> str | None:
    """Property keys are case-insensitive (snf-image upper-cases them)."""
    upper = key.upper()
    for k, v in properties.items():
        if k.upper() == upper:
            return v
    return None


def is_snapshot(properties: Mapping[str, str]) -> bool:
    return snf_bool(get_prop(properties, EXCLUDE_ALL_TASKS))
