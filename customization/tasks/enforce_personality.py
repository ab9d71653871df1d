"""EnforcePersonality: write the instance's files (path, content, owner, group, mode) into the guest."""

from __future__ import annotations

import posixpath

from customization import accounts
from customization.errors import CustomizationError
from customization.params import InjectedFile
from customization.tasks.base import TaskContext, TaskMeta, TaskResult

META = TaskMeta(
    name="EnforcePersonality",
    summary="Write the instance's personality files with their owner, group and mode",
    runs_after=(
        "AssignHostname",
        "ChangePassword",
        "InjectSSHKeys",
        "DeleteSSHKeys",
        "ChangeMachineId",
        "AddSwap",
    ),
    activate_by=("files",),
)


def _make_parents(ctx: TaskContext, path: str) -> None:
    missing = []
    parent = posixpath.dirname(path)
    while ctx.guest.stat(parent) is None:
        missing.append(parent)
        parent = posixpath.dirname(parent)
    for directory in reversed(missing):
        ctx.guest.ensure_dir(directory, 0o755, 0, 0)


def _inject(ctx: TaskContext, item: InjectedFile) -> None:
    uid, gid = accounts.owner_ids(ctx.guest, item.owner, item.group)
    _make_parents(ctx, item.path)
    ctx.guest.write(item.path, item.content, mode=item.mode, uid=uid, gid=gid)


def run(ctx: TaskContext) -> TaskResult:
    errors: list[str] = []
    for item in ctx.params.files:
        try:
            _inject(ctx, item)
        except CustomizationError as e:  # independent files: report them all, then fail
            errors.append(f"{item.path}: {e}")
    if errors:
        raise CustomizationError(f"{len(errors)} file(s) not injected: {'; '.join(errors)}")
    return TaskResult(f"{len(ctx.params.files)} file(s) written")
