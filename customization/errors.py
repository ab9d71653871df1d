"""The customization engine's exception tree: every failure is one clear line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from customization.report import Report


class CustomizationError(Exception):
    """Base class: ``str(err)`` is a single line meant for the operator (and Ganeti's last log line)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class PropertyError(CustomizationError):
    """An image property is unknown, malformed or contradicts another one."""


class ParameterError(CustomizationError):
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


class ToolError(CustomizationError):
    """An external tool failed; the message names the tool and quotes its last error line."""


class TaskOrderError(CustomizationError):
    """Task metadata is invalid: unknown task names, duplicates or a dependency cycle."""


class TaskFailed(CustomizationError):
    """A task failed; ``report`` holds the outcomes so far (the failed one last)."""

    def __init__(self, task: str, cause: BaseException, report: Report) -> None:
        super().__init__(f"{task}: {cause}")
        self.task = task
        self.report = report
        self.__cause__ = cause
