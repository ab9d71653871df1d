"""Image properties: snf-image's names, values and boolean rules, validated before any byte is written."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from atoll_common import booleans
from atoll_common.booleans import is_empty
from customization.errors import PropertyError

LOG = logging.getLogger(__name__)

OS_FAMILIES = ("linux", "windows", "windows-legacy", "freebsd", "netbsd", "openbsd")
HASHING_METHODS = ("md5", "sha1", "blowfish", "sha256", "sha512", "yescrypt")

# Every task snf-image knows, so an image excluding one of them still validates here even when this engine
# has no such task (it is then simply not run). Atoll's own task names are added by the engine.
SNF_IMAGE_TASKS = (
    "FixPartitionTable",
    "FilesystemResizeUnmounted",
    "MountImage",
    "InitializeDatasource",
    "InstallUnattend",
    "FilesystemResizeMounted",
    "AddSwap",
    "AssignHostname",
    "ChangeMachineId",
    "ChangePassword",
    "ConfigureNetwork",
    "DeleteSSHKeys",
    "DisableRemoteDesktopConnections",
    "SELinuxAutorelabel",
    "EnforcePersonality",
    "RunCustomTask",
    "UmountImage",
    "FilesystemResizeAfterUmount",
)
ATOLL_TASKS = ("FilesystemResize", "InjectSSHKeys")
KNOWN_TASKS = {name.upper(): name for name in (*SNF_IMAGE_TASKS, *ATOLL_TASKS)}

BOOLEANS = (
    "EXCLUDE_ALL_TASKS",
    "EXCLUDE_MOUNTED_TASKS",
    "EXCLUDE_FILESYSTEMRESIZE_TASKS",
    "DO_SYNC",
    "IGNORE_UNATTEND",
    "ALLOW_MOUNTED_TASK_OVERWRITING",
    "OFFLINE_NTFSRESIZE",
    "OFFLINE_NTFSRESIZE_NOCHECK",
    "CLOUD_INIT",
    "NM_NETWORKING",
)
# Free-form properties images carry (Plankton/Synnefo metadata); accepted and ignored.
DESCRIPTIVE = (
    "OS",
    "DESCRIPTION",
    "KERNEL",
    "GUI",
    "SORTORDER",
    "PARTITION_TABLE",
    "FILESYSTEM",
    "ROOT_PARTUUID",
)
_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")
_SWAP_RE = re.compile(r"^(?:(?P<disk>[A-Za-z])|(?P<part>[1-9][0-9]*):(?P<mb>[1-9][0-9]*))$")


@dataclass(frozen=True)
class SwapSpec:
    """SWAP=<partition>:<MiB> (a new partition on the root disk) or SWAP=<letter> (another disk)."""

    partition: int | None = None
    size_mib: int | None = None
    disk_letter: str | None = None


@dataclass(frozen=True)
class NormalizedProperties:
    """Validated properties: typed fields, plus the raw upper-cased mapping."""

    raw: Mapping[str, str]
    os_family: str | None = None
    root_partition: int | None = None
    users: tuple[str, ...] = ("root",)
    passwd_hashing_method: str = "sha512"
    swap: SwapSpec | None = None
    exclude_all: bool = False
    exclude_mounted: bool = False
    exclude_resize: bool = False
    excluded_tasks: frozenset[str] = frozenset()
    flags: Mapping[str, bool] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()

    def flag(self, name: str) -> bool:
        return self.flags.get(name.upper(), False)

    def is_excluded(self, *task_names: str) -> bool:
        """True when ``EXCLUDE_TASK_<name>`` is set for any of the given names (case-insensitive)."""
        return any(n.upper() in self.excluded_tasks for n in task_names)


def parse_bool(key: str, value: str, warnings: list[str]) -> bool:
    """atoll_common's parser, strict: an empty value is false with a warning, an unknown word an error."""
    if is_empty(value):
        warnings.append(f"{key} is set but empty; taken as false")
        return False
    try:
        return booleans.parse_bool(value, key=key, strict=True)
    except booleans.NotABoolean as e:
        raise PropertyError(str(e)) from e


def _upper_keys(properties: Mapping[str, object]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in properties.items():
        if not isinstance(key, str) or not key.strip():
            raise PropertyError(f"property name {key!r} is not a non-empty string")
        upper = key.strip().upper()
        text = value if isinstance(value, str) else str(value)  # snf-image str()s JSON values (0.22.2)
        if upper in out and out[upper] != text:
            raise PropertyError(
                f"property {upper} is given twice with different values (names are case-insensitive)"
            )
        out[upper] = text
    return out


def parse_users(value: str) -> tuple[str, ...]:
    users = tuple(value.split())
    if not users:
        raise PropertyError("USERS is empty (give space-separated user names, e.g. 'root user')")
    for user in users:
        if not _USER_RE.match(user):
            raise PropertyError(f"USERS: {user!r} is not a valid user name")
    return users


def _parse_int(key: str, value: str) -> int:
    if not re.fullmatch(r"[1-9][0-9]{0,3}", value.strip()):
        raise PropertyError(f"{key}={value!r} is not a partition number (1, 2, ...)")
    return int(value)


def _parse_swap(value: str) -> SwapSpec:
    match = _SWAP_RE.match(value.strip())
    if not match:
        raise PropertyError(f"SWAP={value!r} is not valid (use <partition number>:<size in MiB>, e.g. 2:512)")
    if match["disk"]:
        return SwapSpec(disk_letter=match["disk"].lower())
    return SwapSpec(partition=int(match["part"]), size_mib=int(match["mb"]))


def _check_custom_task(value: str) -> None:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise PropertyError("CUSTOM_TASK is not valid base64") from e


def validate(properties: Mapping[str, object]) -> NormalizedProperties:
    """Check every property and return them typed. Raises PropertyError with one clear line."""
    raw = _upper_keys(properties)
    warnings: list[str] = []
    flags = {key: parse_bool(key, raw[key], warnings) for key in BOOLEANS if key in raw}
    excluded: set[str] = set()
    ignored: list[str] = []
    for key, value in raw.items():
        if key.startswith("EXCLUDE_TASK_"):
            task = key[len("EXCLUDE_TASK_") :]
            if task not in KNOWN_TASKS:
                raise PropertyError(f"{key}: there is no task called {task!r}")
            if parse_bool(key, value, warnings):
                excluded.add(task)
        elif key not in BOOLEANS and key not in _TYPED and key not in DESCRIPTIVE:
            ignored.append(key)
    os_family = raw.get("OSFAMILY", "").strip().lower() or None
    if os_family is not None and os_family not in OS_FAMILIES:
        raise PropertyError(f"OSFAMILY={raw['OSFAMILY']!r} is not one of {', '.join(OS_FAMILIES)}")
    method = raw.get("PASSWD_HASHING_METHOD", "").strip().lower() or "sha512"
    if method not in HASHING_METHODS:
        raise PropertyError(
            f"PASSWD_HASHING_METHOD={raw['PASSWD_HASHING_METHOD']!r} is not one of "
            f"{', '.join(HASHING_METHODS)}"
        )
    if "CUSTOM_TASK" in raw:
        _check_custom_task(raw["CUSTOM_TASK"])
    if ignored:
        LOG.debug("ignoring image properties the engine does not use: %s", ", ".join(sorted(ignored)))
    return NormalizedProperties(
        raw=raw,
        os_family=os_family,
        root_partition=_parse_int("ROOT_PARTITION", raw["ROOT_PARTITION"])
        if "ROOT_PARTITION" in raw
        else None,
        users=parse_users(raw["USERS"]) if "USERS" in raw else ("root",),
        passwd_hashing_method=method,
        swap=_parse_swap(raw["SWAP"]) if raw.get("SWAP", "").strip() else None,
        exclude_all=flags.get("EXCLUDE_ALL_TASKS", False),
        exclude_mounted=flags.get("EXCLUDE_MOUNTED_TASKS", False),
        exclude_resize=flags.get("EXCLUDE_FILESYSTEMRESIZE_TASKS", False),
        excluded_tasks=frozenset(excluded),
        flags=flags,
        warnings=tuple(warnings),
        ignored=tuple(sorted(ignored)),
    )


_TYPED = ("OSFAMILY", "ROOT_PARTITION", "USERS", "PASSWD_HASHING_METHOD", "SWAP", "CUSTOM_TASK")
