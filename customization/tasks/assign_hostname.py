"""AssignHostname: write /etc/hostname and the 127.0.1.1 line of /etc/hosts."""

from __future__ import annotations

from customization.tasks.base import TaskContext, TaskMeta, TaskResult

META = TaskMeta(
    name="AssignHostname",
    summary="Set the host name in /etc/hostname and /etc/hosts",
    runs_after=("FilesystemResize",),
    activate_by=("hostname",),
)


def run(ctx: TaskContext) -> TaskResult:
    hostname = ctx.params.hostname
    assert hostname is not None
    changed = ctx.os.write_hostname(hostname)
    changed = ctx.os.update_hosts(hostname) or changed
    return TaskResult(f"hostname set to {hostname}", changed)
