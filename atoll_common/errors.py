"""The root of Atoll's one exception tree: every error a user can meet is one templated line."""

from __future__ import annotations

from typing import Any


class AtollError(Exception):
    """Base of all Atoll errors; ``message`` is a %-template filled from the keyword arguments.

    ``exit_code`` is what a command-line interface exits with (2 for usage errors, as click does).
    """

    message = "unexpected error"
    exit_code = 1

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        self.kwargs = kwargs
        template = message if message is not None else self.message
        try:
            text = template % kwargs if kwargs else template
        except (KeyError, TypeError, ValueError):
            text = f"{template} {kwargs!r}"
        super().__init__(text)


class InvalidInput(AtollError):
    """A request that cannot be carried out as asked (e.g. a clone smaller than its source, a property
    that does not parse); an HTTP interface answers it with 400."""

    message = "invalid input"


class UsageError(InvalidInput):
    """Malformed input: a size, name, key or value that does not parse (exit code 2, like click)."""

    exit_code = 2


class ToolError(AtollError):
    """An external tool is missing, failed or hung; the message names it and quotes its last error line."""

    message = "external tool failure"

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(" ".join(str(message).split()) if message is not None else None, **kwargs)
