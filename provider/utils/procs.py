"""Process identity on this host: a pid plus the kernel's start time names one process for good."""

from __future__ import annotations


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None when no such process runs.

    A pid alone is reused by the kernel; pid and start time together never are (until reboot, after
    which the recorded process is gone anyway).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields and fields[0] in ("Z", "X"):  # a zombie serves nothing
        return None
    return fields[19] if len(fields) > 19 else None


def alive(pid: int | None, started: str | None) -> bool:
    """Is the process recorded as (``pid``, ``started``) still running?"""
    return pid is not None and started is not None and start_time(pid) == started
