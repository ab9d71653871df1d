"""The one way Atoll runs external commands: argv lists, ``LANG=C``, a fixed error template."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from provider.errors import AtollError

LOG = logging.getLogger(__name__)

# Ganeti runs provider scripts with an empty environment: never rely on the caller's PATH.
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ProcessError(AtollError):
    message = "command %(cmd)s failed with exit code %(exit_code)s: %(stderr)s"

    def __init__(self, cmd: Sequence[str], exit_code: int, stdout: str, stderr: str) -> None:
        self.cmd = list(cmd)
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "(no error output)"
        super().__init__(cmd=" ".join(cmd[:3]), exit_code=exit_code, stderr=last)


class ToolMissing(AtollError):
    message = "required tool %(tool)s is not installed (%(hint)s)"


@dataclass(frozen=True)
class Result:
    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str


Runner = Callable[..., Result]


def which(tool: str, hint: str = "run scripts/install-deps.sh") -> str:
    path = shutil.which(tool, path=os.environ.get("PATH", "") + ":" + SAFE_PATH)
    if path is None:
        raise ToolMissing(tool=tool, hint=hint)
    return path


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    input: str | bytes | None = None,
    timeout: float | None = None,
) -> Result:
    """Run ``argv`` (never a shell string) and return its result; raise ProcessError on failure."""
    full_env = {"PATH": SAFE_PATH, "LANG": "C", "LC_ALL": "C"}
    for key in ("HOME", "TMPDIR"):
        if key in os.environ:
            full_env[key] = os.environ[key]
    if env:
        full_env.update(env)
    argv = [str(a) for a in argv]
    LOG.debug("run %s", argv)
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(
        argv,
        input=data,
        stdin=None if data is not None else subprocess.DEVNULL,
        capture_output=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    result = Result(
        argv,
        proc.returncode,
        proc.stdout.decode(errors="replace"),
        proc.stderr.decode(errors="replace"),
    )
    if check and proc.returncode != 0:
        raise ProcessError(argv, proc.returncode, result.stdout, result.stderr)
    return result
