"""Failpoints: crash the process at a named step, so tests can prove a crash between steps loses nothing.

``ATOLL_FAILPOINT=clone.after-backend`` makes the process SIGKILL itself when it reaches that point —
exactly what a power cut or ``kill -9`` at the worst moment does. Unset, a failpoint costs one dict lookup.
"""

from __future__ import annotations

import os
import signal


def failpoint(name: str) -> None:
    if os.environ.get("ATOLL_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
