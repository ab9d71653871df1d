"""``atoll ganeti install``: the files it writes, idempotence, and the repository copies it renders."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from provider.errors import BadConfiguration
from provider.ganeti import install
from tests.conftest import StoreEnv
from tests.ganeti.conftest import make_installed

REPO = Path(__file__).resolve().parents[2]
HOOK_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@pytest.mark.parametrize(
    ("directory", "render"),
    [
        pytest.param("ext_storage", install.extstorage_files, id="extstorage"),
        pytest.param("customization/ganeti_os", install.os_files, id="os"),
        pytest.param("hooks", install.hook_files, id="hooks"),
    ],
)
def test_repository_copies_are_what_install_writes(directory: str, render) -> None:  # type: ignore[no-untyped-def]
    """The files in the repository are the install output for the system interpreter: they never drift."""
    for file in render("/usr/bin/python3", None):
        path = REPO / directory / file.relpath
        assert path.read_text() == file.content, f"{path} differs: re-render it with provider.ganeti.install"
        assert bool(path.stat().st_mode & 0o100) == file.executable, path


def test_install_writes_everything_and_is_idempotent(plain_env: StoreEnv, tmp_path: Path) -> None:
    inst = make_installed(plain_env, tmp_path)
    required = {"create", "attach", "detach", "remove", "grow", "setinfo", "verify", "parameters.list"}
    assert required <= {p.name for p in inst.extstorage.iterdir()}
    assert {"snapshot", "open", "close"} <= {p.name for p in inst.extstorage.iterdir()}
    assert (inst.os / "ganeti_api_version").read_text() == "20\n"
    assert {"create", "export", "import", "rename", "verify"} <= {p.name for p in inst.os.iterdir()}
    hooks = sorted(inst.hooks.glob("*-post.d/*"))
    assert [h.parent.name for h in hooks] == [
        "disk-grow-post.d",
        "instance-remove-post.d",
        "instance-rename-post.d",
    ]
    assert all(HOOK_NAME.match(h.name) for h in hooks)
    create = (inst.extstorage / "create").read_text()
    assert f"ATOLL_CONFIG={plain_env.config_path}" in create and sys.executable in create

    again = install.install(
        sys.executable,
        str(plain_env.config_path),
        extstorage_dir=tmp_path / "extstorage",
        os_dir=tmp_path / "os",
        hooks_dir=tmp_path / "hooks",
        log_dir=tmp_path / "none",
    )
    assert again and {c.state for c in again} == {"unchanged"}
    (inst.extstorage / "grow").write_text("#!/bin/sh\nexit 0\n")
    fixed = install.install(sys.executable, str(plain_env.config_path), tmp_path / "extstorage", None, None)
    assert [c.path.name for c in fixed if c.state == "updated"] == ["grow"]


def test_scripts_run_without_any_environment(plain_env: StoreEnv, tmp_path: Path) -> None:
    inst = make_installed(plain_env, tmp_path)
    usage = inst.run(inst.extstorage, "attach", ("-h",))
    assert usage.returncode == 0 and "Atoll ExtStorage provider" in usage.stderr
    missing = inst.ext("create")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        "atoll create: error: VOL_NAME is not set: this script is meant to be run by Ganeti (see -h)"
    )
    assert inst.run(inst.os, "create", ("-h",)).returncode == 0


def test_refuses_symlinked_target_and_bad_interpreter(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "atoll").symlink_to(tmp_path / "real")
    with pytest.raises(BadConfiguration, match="is a symlink"):
        install.install(sys.executable, None, tmp_path / "ext", None, None)
    with pytest.raises(BadConfiguration, match="not an absolute path"):
        install.install("python3", None, tmp_path / "ext2", None, None)


def test_cli_install(plain_env: StoreEnv, tmp_path: Path) -> None:
    out = plain_env.json(
        "ganeti",
        "install",
        "--extstorage-dir",
        str(tmp_path / "e"),
        "--os-dir",
        str(tmp_path / "o"),
        "--hooks-dir",
        str(tmp_path / "h"),
        "--skip",
        "hooks",
    )
    assert {row["state"] for row in out} == {"created"}
    assert not (tmp_path / "h").exists()
    verify = tmp_path / "o" / "atoll" / "verify"
    proc = subprocess.run([str(verify), "parameters"], env={}, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
