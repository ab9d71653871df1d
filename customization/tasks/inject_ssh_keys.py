"""InjectSSHKeys: add public keys to each USERS account's authorized_keys (owner, modes, SELinux)."""

from __future__ import annotations

import posixpath

from customization import accounts
from customization.errors import GuestPathError
from customization.tasks.base import TaskContext, TaskMeta, TaskResult

META = TaskMeta(
    name="InjectSSHKeys",
    summary="Append the instance's SSH public keys to authorized_keys of the USERS accounts",
    runs_after=("FilesystemResize", "ChangePassword"),
    activate_by=("ssh_keys",),
)
SSH_HOME_LABEL = b"system_u:object_r:ssh_home_t:s0\x00"


def _keys_file(ctx: TaskContext, user: accounts.User) -> str:
    """sshd's AuthorizedKeysFile (first entry, %h/%u/%% expanded), relative to the home by default."""
    setting = ".ssh/authorized_keys"
    if ctx.guest.exists("/etc/ssh/sshd_config"):
        for line in ctx.guest.read_text("/etc/ssh/sshd_config").splitlines():
            words = line.split()
            if words and words[0].lower() == "match":
                break  # only the global section applies to every user
            if len(words) >= 2 and words[0].lower() == "authorizedkeysfile" and words[1].lower() != "none":
                setting = words[1]
                break
    path = setting.replace("%%", "\0").replace("%h", user.home).replace("%u", user.name).replace("\0", "%")
    return path if path.startswith("/") else posixpath.join(user.home, path)


def _install(ctx: TaskContext, user: accounts.User, keys: tuple[str, ...]) -> bool:
    guest = ctx.guest
    path = _keys_file(ctx, user)
    label = SSH_HOME_LABEL if guest.labels_enabled else None
    home_st = guest.stat(user.home)
    if home_st is None or home_st.kind != "dir":
        raise GuestPathError(f"home directory {user.home} of {user.name} does not exist in the guest")
    changed = False
    ssh_dir = posixpath.dirname(path)
    if posixpath.dirname(ssh_dir) == user.home.rstrip("/") or ssh_dir == posixpath.join(user.home, ".ssh"):
        changed = guest.ensure_dir(ssh_dir, 0o700, user.uid, user.gid, label)  # refuses a symlinked .ssh
    st = guest.lstat(path)
    old = guest.read_text(path) if st is not None and st.kind == "file" else ""
    present = {ln.strip() for ln in old.splitlines()}
    missing = [k for k in keys if k.strip() not in present]
    if st is not None and not missing and (st.mode, st.uid, st.gid) == (0o600, user.uid, user.gid):
        return changed
    text = old if not old or old.endswith("\n") else old + "\n"
    text += "".join(k.strip() + "\n" for k in missing)
    guest.write(
        path, text.encode(), mode=0o600, uid=user.uid, gid=user.gid, label=label if st is None else None
    )
    return True


def run(ctx: TaskContext) -> TaskResult:
    users = accounts.lookup_users(ctx.guest, ctx.props.users)
    changed = [u.name for u in users if _install(ctx, u, ctx.params.ssh_keys)]
    count = len(ctx.params.ssh_keys)
    if not changed:
        return TaskResult(f"{count} key(s) already authorized", changed=False)
    return TaskResult(f"{count} key(s) authorized for {', '.join(changed)}")
