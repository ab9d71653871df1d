"""Task outcomes and the run report: what ran, what was skipped and why, and how long each step took."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Status(enum.StrEnum):
    """How a task ended."""

    RAN = "ran"
    SKIPPED = "skipped"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True)
class TaskOutcome:
    """One task's result, as shown on a progress line and in ``-o json``."""

    name: str
    status: Status
    message: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "message": self.message,
            "seconds": round(self.seconds, 3),
        }

    def line(self) -> str:
        """A human progress line, e.g. ``AssignHostname: ran (0.01 s) hostname set to vm1``."""
        text = f"{self.name}: {self.status.value}"
        if self.status in (Status.RAN, Status.UNCHANGED, Status.FAILED):
            text += f" ({self.seconds:.2f} s)"
        return f"{text} {self.message}".rstrip()


@dataclass
class Report:
    """Everything one ``customize()`` call did, JSON-serialisable through ``to_dict()``."""

    disk: str
    outcomes: list[TaskOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(o.status is not Status.FAILED for o in self.outcomes)

    def outcome(self, name: str) -> TaskOutcome:
        """The outcome of the task called ``name`` (KeyError if it is not in the report)."""
        for item in self.outcomes:
            if item.name == name:
                return item
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "disk": self.disk,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "tasks": [o.to_dict() for o in self.outcomes],
            "warnings": list(self.warnings),
            "facts": dict(self.facts),
        }
