"""The task modules, one per customization step; the engine orders them by their TaskMeta."""

from __future__ import annotations

from customization.tasks import (
    add_swap,
    fix_partition_table,
    inject_files,
    inject_ssh_keys,
    machine_id,
    resize_filesystem,
    set_hostname,
    set_passwords,
    ssh_host_keys,
)
from customization.tasks.base import TaskModule

ALL: tuple[TaskModule, ...] = (
    fix_partition_table,
    resize_filesystem,
    add_swap,
    set_hostname,
    set_passwords,
    inject_ssh_keys,
    ssh_host_keys,
    machine_id,
    inject_files,
)
