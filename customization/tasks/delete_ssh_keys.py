"""DeleteSSHKeys: delete the image's SSH host keys and write fresh ones (without keys there is no sshd)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from typing import cast

from atoll_common import process
from customization import hostkeys
from customization.tasks.base import TaskContext, TaskMeta, TaskResult

META = TaskMeta(
    name="DeleteSSHKeys",
    summary="Replace the image's SSH host keys with freshly generated ones",
    runs_after=("FilesystemResize", "AssignHostname"),
)
SSH_DIR = "/etc/ssh"
_KEY_RE = re.compile(r"^ssh_host_([a-z0-9]+)_key(\.pub)?$")


def _start(kind: str, comment: str, path: str) -> subprocess.Popen[bytes]:
    """Make a key pair at ``path``; RSA from the process's reserve where it has one (then only the
    comment is set, by ssh-keygen, in both files)."""
    reserved = hostkeys.take_rsa() if kind == "rsa" else None
    if reserved is None:
        return process.start(hostkeys.keygen_argv(kind, comment, path))
    private, public = reserved
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    with open(path + ".pub", "wb") as f:
        f.write(public)
    return process.start(["ssh-keygen", "-q", "-c", "-C", comment, "-f", path])


def prepare(ctx: TaskContext) -> None:
    """Start making the usual key types now: RSA takes most of a second, so it overlaps the other tasks
    (or comes from the reserve of the process that runs the customization, see customization.hostkeys)."""
    workdir = tempfile.mkdtemp(prefix="atoll-hostkeys-")
    ctx.stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    comment = f"root@{ctx.params.hostname or 'localhost'}"
    procs = {kind: _start(kind, comment, os.path.join(workdir, kind)) for kind in hostkeys.DEFAULT_TYPES}
    ctx.stack.callback(process.stop, list(procs.values()))
    ctx.scratch["hostkeys"] = (workdir, procs)


def _generate(ctx: TaskContext, types: list[str]) -> dict[str, tuple[bytes, bytes]]:
    """Key pairs of the given types: from prepare() where it made them, else made now, all at once."""
    state = ctx.scratch.pop("hostkeys", None)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    if state is None:
        workdir = tempfile.mkdtemp(prefix="atoll-hostkeys-")
        ctx.stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    else:
        workdir, started = cast(tuple[str, dict[str, subprocess.Popen[bytes]]], state)
        procs.update(started)
    comment = f"root@{ctx.params.hostname or 'localhost'}"
    for kind in types:
        if kind not in procs:
            procs[kind] = _start(kind, comment, os.path.join(workdir, kind))
    process.wait([procs[k] for k in types])
    out = {}
    for kind in types:
        with (
            open(os.path.join(workdir, kind), "rb") as priv,
            open(os.path.join(workdir, kind) + ".pub", "rb") as pub,
        ):
            out[kind] = (priv.read(), pub.read())
    return out


def run(ctx: TaskContext) -> TaskResult:
    guest = ctx.guest
    if not guest.exists(SSH_DIR):
        return TaskResult("the image has no /etc/ssh", changed=False)
    names = [n for n in guest.listdir(SSH_DIR) if _KEY_RE.match(n)]
    old = {n: guest.lstat(f"{SSH_DIR}/{n}") for n in names}
    types = sorted({m.group(1) for n in names if (m := _KEY_RE.match(n))}) or list(hostkeys.DEFAULT_TYPES)
    types = [t for t in types if t != "dsa"]  # OpenSSH no longer makes DSA keys; drop them
    for name in names:
        guest.remove(f"{SSH_DIR}/{name}")
    keys = _generate(ctx, types)
    for kind, (private, public) in keys.items():
        for name, data, default_mode in (
            (f"ssh_host_{kind}_key", private, 0o600),
            (f"ssh_host_{kind}_key.pub", public, 0o644),
        ):
            st = old.get(name)
            keep = st is not None and st.kind == "file"
            guest.write(
                f"{SSH_DIR}/{name}",
                data,
                mode=st.mode if keep and st else default_mode,
                uid=st.uid if keep and st else 0,
                gid=st.gid if keep and st else 0,
            )
    return TaskResult(f"{len(names)} old host key file(s) deleted, new {', '.join(types)} keys written")
