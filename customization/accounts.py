"""The guest's users and groups, from its own /etc/passwd, /etc/group and /etc/shadow (never the host's)."""

from __future__ import annotations

from dataclasses import dataclass

from customization.errors import GuestDataError, ParameterError
from customization.guestfs.base import GuestFS


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str


def _fields(text: str, path: str, count: int) -> list[list[str]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#") or line.startswith(("+", "-")):
            continue
        fields = line.split(":")
        if len(fields) < count:
            raise GuestDataError(f"{path} line {number} is malformed")
        rows.append(fields)
    return rows


def users(guest: GuestFS) -> dict[str, User]:
    out: dict[str, User] = {}
    for f in _fields(guest.read_text("/etc/passwd"), "/etc/passwd", 7):
        try:
            out.setdefault(f[0], User(f[0], int(f[2]), int(f[3]), f[5] or "/"))
        except ValueError as e:
            raise GuestDataError(f"/etc/passwd: bad uid or gid for {f[0]}") from e
    return out


def groups(guest: GuestFS) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in _fields(guest.read_text("/etc/group"), "/etc/group", 3):
        try:
            out.setdefault(f[0], int(f[2]))
        except ValueError as e:
            raise GuestDataError(f"/etc/group: bad gid for {f[0]}") from e
    return out


def lookup_users(guest: GuestFS, names: tuple[str, ...]) -> list[User]:
    """The guest accounts for ``names``; a missing one is an error naming all missing users."""
    known = users(guest)
    missing = [n for n in names if n not in known]
    if missing:
        raise GuestDataError(f"USERS names accounts the guest does not have: {', '.join(missing)}")
    return [known[n] for n in names]


def owner_ids(guest: GuestFS, owner: str, group: str) -> tuple[int, int]:
    """Numeric ids for an owner and group given as names (looked up in the guest) or numbers."""
    uid = int(owner) if owner.isdigit() else None
    gid = int(group) if group.isdigit() else None
    if uid is None:
        known = users(guest)
        if owner not in known:
            raise ParameterError(f"owner {owner!r} does not exist in the guest's /etc/passwd")
        uid = known[owner].uid
    if gid is None:
        known_groups = groups(guest)
        if group not in known_groups:
            raise ParameterError(f"group {group!r} does not exist in the guest's /etc/group")
        gid = known_groups[group]
    return uid, gid


def set_shadow_hash(text: str, names: list[str], hashed: str, lastchg: int) -> str:
    """/etc/shadow with the hash and lastchg (days since 1970) of ``names`` replaced; users missing from
    shadow (but present in passwd) get a new line."""
    if ":" in hashed or "\n" in hashed:
        raise ParameterError("the password hash contains ':' or a newline")
    lines = text.splitlines()
    todo = set(names)
    for i, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] in todo and len(fields) >= 2:
            while len(fields) < 9:
                fields.append("")
            fields[1], fields[2] = hashed, str(lastchg)
            lines[i] = ":".join(fields)
            todo.discard(fields[0])
    for name in names:
        if name in todo:
            lines.append(f"{name}:{hashed}:{lastchg}:0:99999:7:::")
    return "\n".join(lines) + "\n"
