"""FixPartitionTable: GPT backup header to the end of the disk; grow the root partition (and make SWAP)."""

from __future__ import annotations

import logging

from customization import disk as d
from customization.errors import DiskError, UnsupportedImage
from customization.tasks.base import TaskContext, TaskMeta, TaskResult

LOG = logging.getLogger(__name__)
ALIGN = 2048  # 1 MiB in sectors

META = TaskMeta(
    name="FixPartitionTable",
    summary="Move the GPT backup header to the end of the disk and grow the root partition into free space",
    needs_guest=False,
)


def _gpt_backup_misplaced(ctx: TaskContext) -> bool:
    return ctx.table.label == "gpt" and ctx.table.last_lba != ctx.disk.sectors - 34


def _swap_plan(ctx: TaskContext, end: int) -> tuple[int, int] | None:
    """(start, size) in sectors of the swap partition SWAP asks for, or None."""
    swap = ctx.props.swap
    if swap is None or swap.partition is None or swap.size_mib is None:
        return None
    if ctx.table.label == "dos" and (swap.partition > 4 or ctx.root.number > 4):
        raise UnsupportedImage(
            "SWAP on an MBR disk needs a primary partition number (1-4) and a primary root"
        )
    size = swap.size_mib * 2048
    start = (end - size) // ALIGN * ALIGN
    if start <= ctx.root.start:
        raise DiskError(f"no room for a {swap.size_mib} MiB swap partition after the root partition")
    return start, end - start


def _existing_swap(ctx: TaskContext) -> bool:
    swap = ctx.props.swap
    if swap is None or swap.partition is None:
        return False
    found = next((p for p in ctx.table.partitions if p.number == swap.partition), None)
    if found is None:
        return False
    if found.number == ctx.root.number or found.type.upper() != d.SWAP_TYPE[ctx.table.label].upper():
        raise DiskError(f"SWAP names partition {found.number}, which exists and is not a swap partition")
    return True


def run(ctx: TaskContext) -> TaskResult:
    table, part = ctx.table, ctx.root
    if _existing_swap(ctx) or not d.is_last(table, part):
        if _gpt_backup_misplaced(ctx):
            d.relocate_gpt_backup(ctx.disk)
            ctx.table = d.read_table(ctx.disk)
            return TaskResult(f"GPT backup header moved; partition {part.number} is not last, not grown")
        return TaskResult(f"partition {part.number} is not the last one; nothing to grow", changed=False)
    end = d.usable_end(ctx.disk, table)
    swap = _swap_plan(ctx, end)
    new_end = swap[0] if swap else None
    room = (new_end or end) - part.end
    if room < ALIGN and not swap:
        if _gpt_backup_misplaced(ctx):
            d.relocate_gpt_backup(ctx.disk)
            ctx.table = d.read_table(ctx.disk)
            return TaskResult("GPT backup header moved to the end of the disk")
        return TaskResult(f"partition {part.number} already fills the disk", changed=False)
    if room < 0:
        raise DiskError(f"partition {part.number} would have to shrink to make room for swap")
    before = part.size
    table = d.resize_partition(ctx.disk, table, part, new_end)
    message = f"partition {part.number} grown from {before * d.SECTOR >> 20} MiB"
    if swap:
        assert ctx.props.swap is not None and ctx.props.swap.partition is not None
        table = d.add_partition(ctx.disk, table, ctx.props.swap.partition, *swap, d.SWAP_TYPE[table.label])
        message += f", swap partition {ctx.props.swap.partition} added"
    ctx.table = table
    ctx.root = table.get(part.number)
    return TaskResult(f"{message} to {ctx.root.size * d.SECTOR >> 20} MiB")
