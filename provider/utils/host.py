"""Who and when, below every layer: this host's name, the catalog's timestamp format, new ids, and how
to tell a live process from a reused pid."""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid

HOST = socket.gethostname()


def now() -> str:
    """The current UTC time as the catalog stores it (sortable text, microseconds)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    return str(uuid.uuid4())


def proc_start(pid: int) -> str | None:
    """The kernel's start time of ``pid``: tells a live process from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def my_start() -> str | None:
    """This process's start time, read when needed: a value taken at import would be the parent's in a
    forked server worker (gunicorn), so the worker's own pending operations would look abandoned."""
    return proc_start(os.getpid())
