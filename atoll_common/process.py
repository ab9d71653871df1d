"""The one way Atoll runs external commands: argv lists (never a shell string), ``LANG=C``, a minimal
environment with a full sbin PATH, secrets only through stdin or files, one error type with a fixed shape.

Every command is bounded by ``timeout`` (600 s unless the call says otherwise); a call that copies a whole
disk passes ``timeout=None``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from atoll_common.errors import ToolError

LOG = logging.getLogger(__name__)

# Ganeti runs provider and OS scripts with an empty environment: never rely on the caller's PATH.
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_TIMEOUT = 600.0
INSTALL_HINT = "scripts/install-deps.sh installs it"
# `exec` with stdin closed: resize2fs then opens the image as fd 0 and skips its ftruncate().
_CLOSED_STDIN = 'exec "$0" "$@" <&-'


class ProcessError(ToolError):
    """A command exited with a code the caller did not accept."""

    message = "%(cmd)s failed (exit %(exit_code)s): %(detail)s"

    def __init__(self, cmd: Sequence[str], exit_code: int, stdout: str, stderr: str) -> None:
        self.cmd = list(cmd)
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        detail = last_line(stderr) or last_line(stdout) or "no output"
        shown = " ".join([os.path.basename(self.cmd[0]), *self.cmd[1:3]])
        super().__init__(cmd=shown, exit_code=exit_code, detail=detail)


class ToolMissing(ToolError):
    message = "required tool %(tool)s is not installed (%(hint)s)"


@dataclass(frozen=True)
class Result:
    """What a finished command left behind."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str


Runner = Callable[..., Result]


def last_line(text: str) -> str:
    """The last non-empty line of ``text`` (tools put their real complaint there)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal, predictable environment: C locale and a full sbin PATH."""
    env = {"PATH": SAFE_PATH, "LANG": "C", "LC_ALL": "C"}
    for key in ("HOME", "TMPDIR"):
        if key in os.environ:
            env[key] = os.environ[key]
    if extra:
        env.update(extra)
    return env


def which(tool: str, hint: str = INSTALL_HINT) -> str:
    path = shutil.which(tool, path=os.environ.get("PATH", "") + ":" + SAFE_PATH)
    if path is None:
        raise ToolMissing(tool=tool, hint=hint)
    return path


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    input: str | bytes | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    close_stdin: bool = False,
    ok_codes: Sequence[int] = (0,),
) -> Result:
    """Run ``argv`` and return its result; raise ProcessError when ``check`` and the exit code is not in
    ``ok_codes``, ToolMissing when the program does not exist, ToolError when it outlives ``timeout``.

    ``input`` is fed on stdin (the only channel for secrets); ``close_stdin`` starts the program with fd 0
    closed. Output is decoded leniently: guest data may contain anything.
    """
    args = tuple(str(a) for a in argv)
    LOG.debug("run %s", args)
    real = ["sh", "-c", _CLOSED_STDIN, *args] if close_stdin else list(args)
    data = input.encode() if isinstance(input, str) else input
    try:
        proc = subprocess.run(
            real,
            input=data,
            stdin=None if data is not None or close_stdin else subprocess.DEVNULL,
            capture_output=True,
            env=base_env(env),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as e:
        raise ToolMissing(tool=args[0], hint=INSTALL_HINT) from e
    except subprocess.TimeoutExpired as e:
        raise ToolError(f"{args[0]} did not finish within {timeout:.0f} s") from e
    result = Result(
        args, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    )
    if check and proc.returncode not in ok_codes:
        raise ProcessError(args, proc.returncode, result.stdout, result.stderr)
    return result


def start(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start a program in the background (no stdin, output captured); finish it with ``wait``."""
    args = [str(a) for a in argv]
    LOG.debug("start %s", args)
    try:
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base_env()
        )
    except FileNotFoundError as e:
        raise ToolMissing(tool=args[0], hint=INSTALL_HINT) from e


def wait(procs: Sequence[subprocess.Popen[bytes]], timeout: float = DEFAULT_TIMEOUT) -> None:
    """Wait for programs started with ``start``; raise ProcessError for the first that failed."""
    failed: ProcessError | None = None
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0 and failed is None:
            argv = [str(a) for a in proc.args] if isinstance(proc.args, list) else [str(proc.args)]
            failed = ProcessError(
                argv, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
            )
    if failed:
        raise failed


def stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Kill and reap background programs that are no longer wanted."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
