"""Run the project's Ansible tools (from the test virtualenv) and read what a playbook run reported."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
ROLE_DIR = ANSIBLE_DIR / "roles" / "atoll"
BIN = Path(sys.executable).parent
RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+rescued=(?P<rescued>\d+)\s+ignored=(?P<ignored>\d+)",
    re.MULTILINE,
)


def tool(name: str) -> str | None:
    """The test virtualenv's copy of an Ansible tool, else one on the PATH."""
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


def tool_env() -> dict[str, str]:
    """A plain environment for the tools: no colours, no retry files, no stray ansible.cfg."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        PATH=f"{BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        PY_COLORS="0",
    )
    return env


@dataclass(frozen=True)
class Run:
    """One ``ansible-playbook`` run: exit code, output, and the PLAY RECAP counters per host."""

    argv: list[str]
    rc: int
    output: str
    recap: dict[str, dict[str, int]]

    def total(self, counter: str) -> int:
        return sum(host[counter] for host in self.recap.values())

    @property
    def changed_tasks(self) -> list[str]:
        """Names of the tasks that reported a change (from the default callback's output)."""
        names, task = [], ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                task = line[line.index("[") + 1 : line.rindex("]")]
            elif line.startswith("changed:") and task not in names:
                names.append(task)
        return names

    def explain(self) -> str:
        return f"$ {' '.join(self.argv)}\n(exit {self.rc})\n{self.output[-6000:]}"


def run_playbook(
    playbook: str,
    extra_vars: dict[str, object],
    workdir: Path,
    inventory: str = "localhost,",
    options: tuple[str, ...] = (),
) -> Run:
    """Apply ``ansible/<playbook>`` with ``extra_vars`` (written to a file in ``workdir``) to the local
    machine over the local connection, the way the README says."""
    workdir.mkdir(parents=True, exist_ok=True)
    vars_file = workdir / "extra-vars.json"
    vars_file.write_text(json.dumps(extra_vars, indent=2))
    argv = [
        tool("ansible-playbook") or "ansible-playbook",
        "-i",
        inventory,
        "-c",
        "local",
        str(ANSIBLE_DIR / playbook),
        "-e",
        f"@{vars_file}",
        *options,
    ]
    proc = subprocess.run(
        argv, env=tool_env(), cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    output = proc.stdout + proc.stderr
    recap = {}
    for m in RECAP.finditer(output):
        recap[m["host"]] = {k: int(v) for k, v in m.groupdict().items() if k != "host"}
    return Run(argv, proc.returncode, output, recap)


def role_defaults() -> dict[str, object]:
    return yaml.safe_load((ROLE_DIR / "defaults" / "main.yml").read_text())


def os_packages() -> list[str]:
    """The Debian package names the role installs on every node."""
    data = yaml.safe_load((ROLE_DIR / "vars" / "Debian.yml").read_text())
    return list(data["__atoll_packages"])
