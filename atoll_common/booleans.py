"""The one boolean parser for image properties and parameters, with snf-image's words.

yes/true/on/1/set are true, no/false/off/0/unset false, an empty value false. An unknown word is decided
by where it comes from: input being written (``strict=True``) is refused with :class:`NotABoolean`;
a value already stored (``strict=False``, e.g. an image registered before the check existed, or a value
snf-image accepted) counts as true with a warning, which is snf-image's ``check_yes_no`` rule.
"""

from __future__ import annotations

import logging

from atoll_common.errors import AtollError

LOG = logging.getLogger(__name__)

TRUE_WORDS = frozenset({"yes", "true", "on", "1", "set"})
FALSE_WORDS = frozenset({"no", "false", "off", "0", "unset"})


class NotABoolean(AtollError):
    message = "%(key)s=%(value)r is not a boolean (use one of yes/no, true/false, on/off, 1/0)"
    exit_code = 2


def is_empty(value: str | None) -> bool:
    return value is None or value.strip() == ""


def parse_bool(value: str | None, *, key: str = "value", strict: bool = True) -> bool:
    """``value`` as a boolean; see the module docstring for the unknown word."""
    if value is None:
        return False
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS or word == "":
        return False
    if strict:
        raise NotABoolean(key=key, value=value)
    LOG.warning("%s=%r is not yes/no; treated as true", key, value)
    return True
