"""ChangeMachineId: give the clone its own /etc/machine-id (and the D-Bus copy when it is a separate file)."""

from __future__ import annotations

import secrets

from customization.tasks.base import TaskContext, TaskMeta, TaskResult

META = TaskMeta(
    name="ChangeMachineId",
    summary="Write a new random /etc/machine-id so clones do not share one",
    runs_after=("FilesystemResize",),
)
PATHS = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def run(ctx: TaskContext) -> TaskResult:
    new = secrets.token_hex(16)
    done = []
    for path in PATHS:
        st = ctx.guest.lstat(path)
        if st is None or st.kind != "file":
            continue  # absent, or a symlink to the first one
        ctx.guest.write(path, f"{new}\n".encode())
        done.append(path)
    if not done:
        return TaskResult("the image has no machine-id file", changed=False)
    return TaskResult(f"new machine id in {', '.join(done)}")
