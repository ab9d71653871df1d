"""Who the local CLI is acting for: the OS user of the process, identified by uid (never by environment).

``$ATOLL_USER`` lets an admin act as another user (a service account, a tenant in a support case). It is
honoured only when the real caller is already an admin — uid 0, a user listed in ``auth.admins``, or a
member of ``auth.admin_group`` — because a name taken from the environment proves nothing: without this
rule any local user could call itself ``root``.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Mapping, Sequence

from provider.config import AuthConfig
from provider.errors import PermissionDenied
from provider.services.base import Caller

USER_ENV = "ATOLL_USER"


def user_name(uid: int) -> str:
    """The account name of ``uid`` from the password database (a uid without one is its number)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def is_admin(uid: int, name: str, gids: Sequence[int], auth: AuthConfig) -> bool:
    """uid 0, a listed admin, or a member of the admin group (the process's own group list)."""
    if uid == 0 or name in auth.admins:
        return True
    if not auth.admin_group:
        return False
    gid = group_id(auth.admin_group)
    return gid is not None and gid in gids


def os_caller(
    auth: AuthConfig,
    *,
    uid: int | None = None,
    gids: Sequence[int] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Caller:
    """The caller of this process; ``$ATOLL_USER`` names another user, for admins only.

    :raises PermissionDenied: a non-admin set ``$ATOLL_USER`` to someone else.
    """
    uid = os.getuid() if uid is None else uid
    gids = [os.getgid(), *os.getgroups()] if gids is None else gids
    environ = os.environ if environ is None else environ
    real = user_name(uid)
    admin = is_admin(uid, real, gids, auth)
    override = environ.get(USER_ENV, "")
    if not override or override == real:
        return Caller(name=real, admin=admin)
    if not admin:
        raise PermissionDenied(
            reason=f"{USER_ENV}={override} is honoured only for admins; you are {real} "
            f"(unset {USER_ENV}, or ask an admin)"
        )
    return Caller(name=override, admin=override in auth.admins)
