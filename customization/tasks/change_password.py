"""ChangePassword: set the shadow hash (and lastchg) of every user in USERS."""

from __future__ import annotations

import time

from customization import accounts, crypt
from customization.tasks.base import TaskContext, TaskMeta, TaskResult

META = TaskMeta(
    name="ChangePassword",
    summary="Set the password hash of the USERS accounts in /etc/shadow",
    runs_after=("FilesystemResize",),
    activate_by=("password", "password_hash"),
)


def run(ctx: TaskContext) -> TaskResult:
    users = [u.name for u in accounts.lookup_users(ctx.guest, ctx.props.users)]
    if ctx.params.password is not None:
        hashed = crypt.hash_password(ctx.params.password.reveal(), ctx.props.passwd_hashing_method)
        how = ctx.props.passwd_hashing_method
    else:
        assert ctx.params.password_hash is not None
        hashed, how = ctx.params.password_hash, "the given hash"
    shadow = ctx.guest.read_text("/etc/shadow")
    days = int(time.time() // 86400)
    ctx.guest.write("/etc/shadow", accounts.set_shadow_hash(shadow, users, hashed, days).encode())
    return TaskResult(f"password set for {', '.join(users)} ({how})")
