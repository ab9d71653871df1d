"""One rollback path: push undo steps as work proceeds; on an exception they run in reverse order."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

LOG = logging.getLogger(__name__)


class Undo:
    def __init__(self) -> None:
        self._steps: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def push(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Undo with ``fn(*args, **kwargs)`` if the block fails (steps run last pushed, first)."""
        self._steps.append((fn, args, kwargs))

    def clear(self) -> None:
        """Keep what was done: nothing is undone any more (call it once the work is committed)."""
        self._steps.clear()

    def run(self) -> None:
        while self._steps:
            fn, args, kwargs = self._steps.pop()
            try:
                fn(*args, **kwargs)
            except Exception:  # the original error matters more; keep undoing the rest
                LOG.exception("rollback step %s failed", getattr(fn, "__name__", fn))


@contextmanager
def rollback() -> Iterator[Undo]:
    """``with rollback() as undo: undo.push(remove, path)`` — the steps run only if the block raises
    (any exception, KeyboardInterrupt included)."""
    undo = Undo()
    try:
        yield undo
    except BaseException:
        undo.run()
        raise
