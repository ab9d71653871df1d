"""The Ansible content is lint-clean with every rule on, parses, and documents each of its variables."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from tests.ansible.playbook import ANSIBLE_DIR, ROLE_DIR, role_defaults, tool, tool_env
from tests.helpers import need

PLAYBOOKS = {"site.yml": "localhost,", "cluster.yml": str(ANSIBLE_DIR / "inventories" / "cluster")}


def run_tool(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    path = tool(name)
    need(path is not None, f"needs {name} (pip install ansible-core ansible-lint yamllint)")
    assert path is not None
    return subprocess.run(
        [path, *args], cwd=ANSIBLE_DIR, env=tool_env(), capture_output=True, text=True, timeout=timeout
    )


def test_lint_configurations_turn_no_rule_off() -> None:
    lint = yaml.safe_load((ANSIBLE_DIR / ".ansible-lint").read_text())
    assert lint["profile"] == "production" and lint["strict"] is True
    assert not {"skip_list", "warn_list", "exclude_paths", "mock_modules"} & set(lint)
    yl = yaml.safe_load((ANSIBLE_DIR / ".yamllint").read_text())
    assert yl["extends"] == "default" and "ignore" not in yl
    assert not [name for name, rule in yl["rules"].items() if rule in (False, "disable")]
    files = [
        p for p in ANSIBLE_DIR.rglob("*") if p.suffix in (".yml", ".j2", ".py", ".md") or p.name[0] == "."
    ]
    files = [p for p in files if p.is_file() and ".ansible" not in p.relative_to(ANSIBLE_DIR).parts]
    assert not [str(p) for p in files if re.search(r"noqa|yamllint disable", p.read_text())]


def test_yamllint() -> None:
    proc = run_tool("yamllint", "--strict", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint() -> None:
    proc = run_tool("ansible-lint", timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Profile 'production' was required, and it passed" in out, out


@pytest.mark.parametrize("playbook", sorted(PLAYBOOKS))
def test_syntax_check(playbook: str) -> None:
    proc = run_tool("ansible-playbook", "--syntax-check", "-i", PLAYBOOKS[playbook], playbook)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cluster_inventory_has_two_nodes_sharing_ceph_and_postgresql() -> None:
    proc = run_tool("ansible-inventory", "-i", PLAYBOOKS["cluster.yml"], "--list")
    assert proc.returncode == 0, proc.stderr
    inventory = json.loads(proc.stdout)
    nodes = inventory["atoll_nodes"]["hosts"]
    assert len(nodes) == 2
    for node in nodes:
        shown = "atoll_store_backend, atoll_rbd_pool, atoll_ceph_user, atoll_catalog_url"
        debug = ["-m", "ansible.builtin.debug", "-a", f"msg={{{{ [{shown}] }}}}"]
        proc = run_tool("ansible", "-i", PLAYBOOKS["cluster.yml"], node, *debug)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        msg = json.loads(proc.stdout.split("=>", 1)[1])["msg"]
        assert msg == ["rbd", "atoll", "atoll", "postgresql://atoll:change-me@db.example.org/atoll"]


def _role_files() -> list[str]:
    parts = ("tasks", "handlers", "templates", "vars", "defaults", "meta")
    return [p.read_text() for part in parts for p in sorted((ROLE_DIR / part).glob("*")) if p.is_file()]


def test_every_role_variable_is_prefixed_and_documented() -> None:
    defaults = role_defaults()
    readme = (ROLE_DIR / "README.md").read_text()
    assert not [v for v in defaults if not v.startswith("atoll_")]
    assert not [v for v in defaults if f"`{v}`" not in readme]
    text = (ROLE_DIR / "defaults" / "main.yml").read_text()
    # every variable has a comment above it (alone, or as the first of a group of related variables)
    blocks = re.split(r"\n\s*\n", text)
    assert not [b for b in blocks if re.match(r"^atoll_", b.strip())]


def test_role_uses_no_undefined_variable() -> None:
    """A typo in a variable name would silently be undefined (or fail only on some paths)."""
    text = "\n".join(_role_files())
    known = set(role_defaults())
    known |= set(role_defaults()["atoll_source_items"])  # package directories, such as atoll_common
    known |= set(re.findall(r"^\s*register:\s*(\w+)", text, re.MULTILINE))
    for data in (yaml.safe_load((ROLE_DIR / "tasks" / name).read_text()) for name in ("python.yml",)):
        for task in data:
            known |= set(task.get("ansible.builtin.set_fact", {}))
    used = set(re.findall(r"(?<![\w.])(_{0,2}atoll_\w+)", text))
    internal = {v for v in used if v.startswith("__")}
    defined_internal = set(re.findall(r"^\s*(__atoll_\w+):", text, re.MULTILINE))
    assert not (used - internal - known - {"atoll_store_fs"})
    assert not (internal - defined_internal)
