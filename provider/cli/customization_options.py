"""click options for `atoll volume create` and `atoll customize`, and turning them into InstanceParams.

A plaintext password is never taken on the command line: use --password-file (or --password-hash).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from customization.errors import ParameterError
from customization.params import InjectedFile, InstanceParams, Secret, check_ssh_key, personality_from_json

F = TypeVar("F", bound=Callable[..., Any])
MAX_SECRET_FILE = 4096

hostname = click.option(
    "--hostname", metavar="NAME", help="Host name for the guest (/etc/hostname, /etc/hosts)."
)
password_file = click.option(
    "--password-file",
    metavar="FILE",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Read the password (first line) from FILE, or '-' for stdin; hashed per PASSWD_HASHING_METHOD.",
)
password_hash = click.option(
    "--password-hash", metavar="HASH", help="A ready crypt(3) hash ($6$... or $y$...) for the USERS accounts."
)
ssh_key = click.option(
    "--ssh-key",
    "ssh_keys",
    metavar="FILE",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True),
    help="Authorize the public key(s) in FILE for the USERS accounts (repeatable).",
)
inject_file = click.option(
    "--file",
    "files",
    metavar="GUEST_PATH=LOCAL[:OWNER:GROUP:MODE]",
    multiple=True,
    help="Copy LOCAL into the guest at GUEST_PATH (default root:root 0440, as snf-image); repeatable.",
)
personality = click.option(
    "--personality",
    metavar="FILE",
    type=click.Path(dir_okay=False, exists=True),
    help="snf-image personality JSON: a list of {path, contents (base64), owner, group, mode}.",
)
users = click.option(
    "--users",
    metavar="'USER ...'",
    help="Space-separated accounts to set passwords and keys for (overrides USERS).",
)

ALL: tuple[Callable[[Any], Any], ...] = (
    hostname,
    password_file,
    password_hash,
    ssh_key,
    inject_file,
    personality,
    users,
)
NAMES = ("hostname", "password_file", "password_hash", "ssh_keys", "files", "personality", "users")


def customization_options(func: F) -> F:
    """Attach every customization option to a click command."""
    for option in reversed(ALL):
        func = option(func)
    return func


def _read_small(path: str, what: str, limit: int = MAX_SECRET_FILE) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read(limit + 1)
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ParameterError(f"{what} {path} is not a regular file")
            return f.read(limit + 1)
    except OSError as e:
        raise ParameterError(f"cannot read {what} {path}: {e.strerror}") from e


def read_password(path: str) -> Secret:
    """The first line of a password file, without its newline."""
    data = _read_small(path, "password file")
    if len(data) > MAX_SECRET_FILE:
        raise ParameterError("the password file is larger than 4 KiB")
    line = data.decode("utf-8", "strict").split("\n", 1)[0].rstrip("\r")
    if not line:
        raise ParameterError("the password file is empty")
    return Secret(line)


def read_keys(path: str) -> list[str]:
    """Public keys from a file: one per non-empty, non-comment line."""
    text = _read_small(path, "SSH key file", 1 << 20).decode("utf-8", "replace")
    keys = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not keys:
        raise ParameterError(f"{path} holds no SSH public key")
    return [check_ssh_key(k) for k in keys]


def parse_file_spec(spec: str) -> InjectedFile:
    """GUEST_PATH=LOCAL[:OWNER:GROUP:MODE] (MODE in octal)."""
    guest, sep, rest = spec.partition("=")
    if not sep or not guest or not rest:
        raise ParameterError(f"--file {spec!r}: expected GUEST_PATH=LOCAL[:OWNER:GROUP:MODE]")
    local, owner, group, mode = rest, "root", "root", 0o440
    parts = rest.rsplit(":", 3)
    if len(parts) == 4 and all(c in "01234567" for c in parts[3]) and parts[3]:
        local, owner, group, mode = parts[0], parts[1], parts[2], int(parts[3], 8)
    try:
        with open(local, "rb") as f:
            content = f.read(16 * 1024 * 1024 + 1)
    except OSError as e:
        raise ParameterError(f"--file {guest}: cannot read {local}: {e.strerror}") from e
    return InjectedFile(guest, content, owner, group, mode)


def params_from_options(**kw: Any) -> InstanceParams:
    """InstanceParams from the options above; other keyword arguments (the command's own) are ignored."""
    files = [parse_file_spec(s) for s in kw.get("files") or ()]
    if kw.get("personality"):
        files += personality_from_json(_read_small(kw["personality"], "personality file", 64 << 20).decode())
    keys = [k for path in kw.get("ssh_keys") or () for k in read_keys(path)]
    user_list = tuple(kw["users"].split()) if kw.get("users") else None
    return InstanceParams(
        hostname=kw.get("hostname") or None,
        password=read_password(kw["password_file"]) if kw.get("password_file") else None,
        password_hash=kw.get("password_hash") or None,
        ssh_keys=tuple(dict.fromkeys(keys)),
        files=tuple(files),
        users=user_list,
    )
