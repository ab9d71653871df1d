"""The one way the engine runs a program: argv lists, ``LANG=C``, secrets only through stdin or files."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from customization.errors import ToolError

LOG = logging.getLogger(__name__)

# Ganeti runs OS scripts with a clean environment and no PATH guarantee.
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# `exec` with stdin closed: resize2fs then opens the image as fd 0 and skips its ftruncate() (see ext.py).
_CLOSED_STDIN = 'exec "$0" "$@" <&-'


@dataclass(frozen=True)
class Result:
    """What a finished program left behind."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal, predictable environment: C locale and a full sbin PATH."""
    env = {"LANG": "C", "LC_ALL": "C", "PATH": _PATH}
    for key in ("TMPDIR", "HOME"):
        if key in os.environ:
            env[key] = os.environ[key]
    if extra:
        env.update(extra)
    return env


def last_line(text: str) -> str:
    """The last non-empty line of ``text`` (tools put their real complaint there)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def run(
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    close_stdin: bool = False,
    ok_codes: Sequence[int] = (0,),
    timeout: float | None = 600,
) -> Result:
    """Run ``argv`` and return its output; raise ToolError when the exit code is not in ``ok_codes``.

    ``input`` is fed on stdin (the only channel for secrets). ``close_stdin`` starts the program with fd 0
    closed. Output is decoded leniently: guest data may contain anything.
    """
    args = [str(a) for a in argv]
    LOG.debug("run %s", args)
    real = ["sh", "-c", _CLOSED_STDIN, *args] if close_stdin else args
    try:
        proc = subprocess.run(
            real,
            input=input,
            stdin=None if input is not None or close_stdin else subprocess.DEVNULL,
            capture_output=True,
            env=base_env(env),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as e:
        raise ToolError(f"{args[0]} is not installed (scripts/install-deps.sh installs it)") from e
    except subprocess.TimeoutExpired as e:
        raise ToolError(f"{args[0]} did not finish within {timeout} s") from e
    result = Result(
        tuple(args),
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )
    if check and proc.returncode not in ok_codes:
        why = last_line(result.stderr) or last_line(result.stdout) or "no output"
        raise ToolError(f"{os.path.basename(args[0])} failed (exit {proc.returncode}): {why}")
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
        raise ToolError(f"{args[0]} is not installed (scripts/install-deps.sh installs it)") from e


def wait(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Wait for programs started with ``start``; raise ToolError for the first that failed."""
    failed = None
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0 and failed is None:
            name = os.path.basename(str(proc.args[0]))  # type: ignore[index]
            failed = f"{name} failed (exit {proc.returncode}): {last_line(err.decode('utf-8', 'replace'))}"
    if failed:
        raise ToolError(failed)


def stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Kill and reap background programs that are no longer wanted."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
