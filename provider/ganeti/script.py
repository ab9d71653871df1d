"""What every script Ganeti runs shares: stderr logging, a trusted store, one clear last line on failure."""

from __future__ import annotations

import getpass
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from provider import config as config_mod
from provider.errors import AtollError

if TYPE_CHECKING:
    from provider.services import Store

LOG = logging.getLogger(__name__)

Action = Callable[[Mapping[str, str]], None]


def open_store() -> Store:
    """The store as Ganeti's trusted service sees it: every image is readable, protected keys settable.

    Ganeti runs its scripts as root with a cleaned environment; the configuration comes from
    ``$ATOLL_CONFIG`` (baked into the shims by ``atoll ganeti install``) or ``/etc/atoll/atoll.yaml``.
    """
    from provider.services import Caller, Store  # imported when needed: open/close and -h stay fast

    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = str(os.geteuid())
    return Store.open(config_mod.load(), Caller(name=name, admin=True))


def _failure_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def run(prog: str, actions: Mapping[str, Action], argv: Sequence[str], usage: str) -> int:
    """Run ``actions[argv[0]]`` with the process environment; return the exit code.

    Logs go to stderr (Ganeti keeps them in its per-action log file); a failure ends with exactly one
    ``<prog> <action>: error: <reason>`` line, which is what Ganeti quotes last.
    """
    if not argv or argv[0] in ("-h", "--help") or (len(argv) > 1 and argv[1] in ("-h", "--help")):
        print(usage, file=sys.stderr)
        return 0 if argv else 2
    action = argv[0]
    if action not in actions:
        print(f"{prog}: unknown action {action!r} (one of: {', '.join(actions)})", file=sys.stderr)
        return 2
    level = logging.DEBUG if os.environ.get("DEBUG_LEVEL", "0") not in ("", "0") else logging.INFO
    logging.basicConfig(level=level, format=f"{prog} {action}: %(message)s", stream=sys.stderr, force=True)
    try:
        actions[action](os.environ)
    except AtollError as e:  # customization errors included: one exception tree
        LOG.debug("failure", exc_info=True)
        print(f"{prog} {action}: error: {_failure_line(e)}", file=sys.stderr)
        return getattr(e, "exit_code", 1) or 1
    except Exception as e:  # the script's edge: anything unexpected still ends with one clear line
        LOG.exception("unexpected failure")
        print(f"{prog} {action}: error: {type(e).__name__}: {_failure_line(e)}", file=sys.stderr)
        return 1
    return 0
