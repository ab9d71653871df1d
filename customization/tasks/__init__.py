"""The task modules, one per customization step; the engine orders them by their TaskMeta."""

from __future__ import annotations

from customization.tasks import (
    add_swap,
    assign_hostname,
    change_machine_id,
    change_password,
    delete_ssh_keys,
    enforce_personality,
    filesystem_resize,
    fix_partition_table,
    inject_ssh_keys,
)
from customization.tasks.base import TaskModule

ALL: tuple[TaskModule, ...] = (
    fix_partition_table,
    filesystem_resize,
    add_swap,
    assign_hostname,
    change_password,
    inject_ssh_keys,
    delete_ssh_keys,
    change_machine_id,
    enforce_personality,
)
