"""Property protection with Glance's semantics: per property pattern, the roles that may create, read,
update or delete it (``images.property_protections``; ``images.protected_properties`` patterns are
admin-only for every change). Enforced by the image services, so the CLI and the API agree."""

from __future__ import annotations

from collections.abc import Mapping

from provider.config import ImagesConfig
from provider.errors import PermissionDenied
from provider.services.base import Caller

_VERBS = {"create": "set", "update": "set", "delete": "unset", "read": "read"}


def may(config: ImagesConfig, caller: Caller, key: str, operation: str) -> bool:
    roles = config.allowed_roles(key, operation)
    if roles is None or "@" in roles:
        return True
    return bool(set(roles) & set(caller.effective_roles))


def check(config: ImagesConfig, caller: Caller, key: str, operation: str) -> None:
    if not may(config, caller, key, operation):
        roles = [r for r in config.allowed_roles(key, operation) or () if r != "!"]
        who = "nobody" if not roles else "only an admin" if roles == ["admin"] else "only " + "/".join(roles)
        verb = _VERBS[operation]
        raise PermissionDenied(reason=f"property {key} is protected: {who} may {verb} it")


def check_changes(
    config: ImagesConfig, caller: Caller, old: Mapping[str, str], new: Mapping[str, str]
) -> None:
    """Every property added, changed or removed between ``old`` and ``new`` is allowed for ``caller``."""
    for key, value in new.items():
        if key not in old:
            check(config, caller, key, "create")
        elif old[key] != value:
            check(config, caller, key, "update")
    for key in old:
        if key not in new:
            check(config, caller, key, "delete")


def readable(config: ImagesConfig, caller: Caller, props: Mapping[str, str]) -> dict[str, str]:
    """The properties ``caller`` may read."""
    return {k: v for k, v in props.items() if may(config, caller, k, "read")}
