"""The customization engine's branch of Atoll's exception tree: every failure is one clear line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from atoll_common.errors import AtollError, InvalidInput, ToolError

if TYPE_CHECKING:
    from customization.report import Report


__all__ = [
    "CustomizationError",
    "DiskError",
    "FilesystemError",
    "GuestDataError",
    "GuestPathError",
    "ParameterError",
    "PropertyError",
    "TaskFailed",
    "TaskOrderError",
    "ToolError",
    "UnsupportedImage",
]


class CustomizationError(AtollError):
    """Base class: ``str(err)`` is a single line meant for the operator (and Ganeti's last log line).

    A failing external tool raises :class:`atoll_common.errors.ToolError` (re-exported here), which is an
    AtollError but not a CustomizationError: the engine reports it as the failure of the task that ran it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class PropertyError(CustomizationError, InvalidInput):
    """An image property is unknown, malformed or contradicts another one."""


class ParameterError(CustomizationError, InvalidInput):
    """An instance parameter (hostname, password, key, injected file, ...) is invalid."""


class UnsupportedImage(CustomizationError):
    """The image is valid but uses something this engine does not handle (OS family, filesystem, ...)."""


class DiskError(CustomizationError):
    """The disk or its partition table is unusable (corrupt, truncated, partition past the end, ...)."""


class FilesystemError(CustomizationError):
    """A filesystem check, repair or resize failed, or the filesystem is not in a state we may edit."""


class GuestPathError(CustomizationError):
    """A path inside the guest is unsafe (symlink, wrong type) or escapes the guest root."""


class GuestDataError(CustomizationError):
    """A guest configuration file (passwd, shadow, group, ...) is missing or malformed."""


class TaskOrderError(CustomizationError):
    """Task metadata is invalid: unknown task names, duplicates or a dependency cycle."""


class TaskFailed(CustomizationError):
    """A task failed; ``report`` holds the outcomes so far (the failed one last)."""

    def __init__(self, task: str, cause: BaseException, report: Report) -> None:
        super().__init__(f"{task}: {cause}")
        self.task = task
        self.report = report
        self.__cause__ = cause
