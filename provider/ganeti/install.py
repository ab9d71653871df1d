"""``atoll ganeti install``: put the ExtStorage provider, the OS definition and the hooks on a node.

Every script is a one-line shim into the installed Atoll: the interpreter path (and the configuration
file, when one was chosen) is written into it, because Ganeti runs scripts with a cleaned environment.
Installing twice changes nothing; files are replaced atomically.
"""

from __future__ import annotations

import grp
import hashlib
import json
import logging
import os
import shlex
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from atoll_common.rollback import rollback
from provider.errors import BadConfiguration
from provider.ganeti import env as ext_env
from provider.ganeti import osparams
from provider.ganeti.extstorage import ACTIONS as EXT_ACTIONS
from provider.ganeti.hooks import HOOKS

LOG = logging.getLogger(__name__)
NAME = "atoll"
DEFAULT_EXTSTORAGE_DIR = Path("/srv/ganeti/extstorage")
DEFAULT_OS_DIR = Path("/srv/ganeti/os")
DEFAULT_HOOKS_DIR = Path("/etc/ganeti/hooks")
GANETI_LOG_DIR = Path("/var/log/ganeti")
OS_ACTIONS = ("create", "export", "import", "rename", "verify")


@dataclass(frozen=True)
class File:
    relpath: str
    content: str
    executable: bool = False


@dataclass(frozen=True)
class Change:
    path: Path
    state: str  # created | updated | unchanged


def shim(
    python: str,
    module: str,
    action: str,
    what: str,
    config: str | None,
    path: list[str] | None = None,
    prefork: bool = False,
) -> str:
    """The script Ganeti runs. With ``path`` (the interpreter's import path, found at install time) the
    interpreter starts without ``site`` (-S): no .pth file or import hook is processed on every call,
    which is most of a short verb's cost. With ``prefork`` too, it imports only provider.ganeti.relay
    and hands the call to the node's verb server (provider.ganeti.prefork), where Atoll is imported
    already; without a server it runs the call itself."""
    lines = [
        "#!/bin/sh",
        f"# Atoll {what}, {action}: a shim into {module} (written by `atoll ganeti install`).",
    ]
    if config:
        lines += [f"ATOLL_CONFIG={shlex.quote(config)}", "export ATOLL_CONFIG"]
    if path:
        key = server_key(python, path)
        entry = (
            f"from provider.ganeti.relay import main; sys.exit(main({key!r}, {module!r}))"
            if prefork
            else f"from {module} import main; sys.exit(main())"
        )
        code = f"import sys; sys.path += [p for p in {json.dumps(path)} if p not in sys.path]; {entry}"
        lines.append(f'exec {shlex.quote(python)} -S -P -c {shlex.quote(code)} {action} "$@"')
    else:
        lines.append(f'exec {shlex.quote(python)} -P -m {module} {action} "$@"')
    return "\n".join(lines) + "\n"


def server_key(python: str, path: list[str]) -> str:
    """Names the verb server of one installation (interpreter and import path): shims of another
    installation on the same node never reach it."""
    return hashlib.sha256(json.dumps([python, path]).encode()).hexdigest()[:16]


PATH_PROBE = (
    "import json, os, sys, provider; "
    "print(json.dumps([os.path.dirname(os.path.dirname(provider.__file__)), *[p for p in sys.path if p]]))"
)


def import_path(python: str) -> list[str] | None:
    """Where ``python`` finds Atoll and its dependencies (for shims that skip ``site``); None if it
    cannot tell, and the shims then start the interpreter normally."""
    try:
        out = subprocess.run([python, "-P", "-c", PATH_PROBE], capture_output=True, text=True, timeout=60)
        found = json.loads(out.stdout) if out.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    return [str(p) for p in found] if isinstance(found, list) else None


def _parameters(params: Iterable[tuple[str, str]]) -> str:
    return "".join(f"{name} {description}\n" for name, description in params)


def extstorage_files(
    python: str, config: str | None, path: list[str] | None = None, prefork: bool = False
) -> list[File]:
    """The verbs (their latency is Ganeti's: ``path`` gives them the quick start, see :func:`shim`)."""
    module = "provider.ganeti.extstorage"
    files = [
        File(verb, shim(python, module, verb, "ExtStorage provider", config, path, prefork), True)
        for verb in EXT_ACTIONS
    ]
    return [*files, File("parameters.list", _parameters(ext_env.PARAMETERS))]


def os_files(
    python: str, config: str | None, path: list[str] | None = None, prefork: bool = False
) -> list[File]:
    module = "provider.ganeti.osdef"
    files = [
        File(action, shim(python, module, action, "OS definition", config, path, prefork), True)
        for action in OS_ACTIONS
    ]
    return [
        *files,
        File("ganeti_api_version", f"{osparams.API_VERSION}\n"),
        File("variants.list", "".join(f"{v}\n" for v in osparams.VARIANTS)),
        File("parameters.list", _parameters(osparams.PARAMETERS)),
    ]


def hook_files(
    python: str, config: str | None, path: list[str] | None = None, prefork: bool = False
) -> list[File]:
    module = "provider.ganeti.hooks"
    return [
        File(f"{where}-post.d/{name}", shim(python, module, action, "hook", config, path, prefork), True)
        for where, name, action in HOOKS
    ]


def _write(path: Path, file: File) -> Change:
    mode = 0o755 if file.executable else 0o644
    try:
        if path.read_text() == file.content and (path.stat().st_mode & 0o777) == mode:
            return Change(path, "unchanged")
        state = "updated"
    except FileNotFoundError:
        state = "created"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with rollback() as undo:
        undo.push(Path(tmp).unlink, missing_ok=True)
        with os.fdopen(fd, "w") as f:
            f.write(file.content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    return Change(path, state)


def write_tree(base: Path, files: Iterable[File]) -> list[Change]:
    if base.is_symlink():
        raise BadConfiguration(reason=f"{base} is a symlink: remove it, or install somewhere else")
    return [_write(base / f.relpath, f) for f in files]


def ensure_log_dir(log_dir: Path = GANETI_LOG_DIR) -> list[Change]:
    """Ganeti's Debian package forgets ``/var/log/ganeti/extstorage``: every ExtStorage action but attach
    fails without it."""
    target = log_dir / "extstorage"
    if not log_dir.is_dir() or target.is_dir():
        return []
    target.mkdir(mode=0o750)
    try:
        os.chown(target, 0, grp.getgrnam("gnt-daemons").gr_gid)
    except (KeyError, PermissionError):
        LOG.warning("could not give %s to group gnt-daemons", target)
    return [Change(target, "created")]


def install(
    python: str,
    config: str | None,
    extstorage_dir: Path | None = DEFAULT_EXTSTORAGE_DIR,
    os_dir: Path | None = DEFAULT_OS_DIR,
    hooks_dir: Path | None = DEFAULT_HOOKS_DIR,
    log_dir: Path = GANETI_LOG_DIR,
    prefork: bool = True,
) -> list[Change]:
    """Install the parts whose directory is given (None skips one); return what changed. ``prefork``:
    the scripts hand their calls to the node's verb server (see :func:`shim`)."""
    if not os.path.isabs(python) or not os.access(python, os.X_OK):
        raise BadConfiguration(reason=f"the interpreter {python!r} is not an absolute path to an executable")
    if config is not None:
        config = os.path.abspath(config)
    changes: list[Change] = []
    path = import_path(python)  # every script Ganeti runs starts without site (see shim)
    if extstorage_dir is not None:
        changes += write_tree(extstorage_dir / NAME, extstorage_files(python, config, path, prefork))
        changes += ensure_log_dir(log_dir)
    if os_dir is not None:
        changes += write_tree(os_dir / NAME, os_files(python, config, path, prefork))
    if hooks_dir is not None:
        changes += write_tree(hooks_dir, hook_files(python, config, path, prefork))
    return changes
