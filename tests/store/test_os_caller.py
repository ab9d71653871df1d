"""Identity on one node: the caller is the process's uid; $ATOLL_USER is honoured for admins only."""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from provider.config import AuthConfig
from provider.errors import PermissionDenied
from provider.services.os_caller import os_caller
from tests.helpers import need_root, need_tools

NOBODY = 65534


def test_root_may_act_as_another_user() -> None:
    caller = os_caller(AuthConfig(), uid=0, gids=[0], environ={"ATOLL_USER": "alice"})
    assert (caller.name, caller.admin) == ("alice", False)


def test_root_without_override_is_an_admin_named_by_uid() -> None:
    # LOGNAME/USER are ignored: only the uid counts.
    caller = os_caller(AuthConfig(admins=()), uid=0, gids=[0], environ={"LOGNAME": "mallory"})
    assert (caller.name, caller.admin) == ("root", True)


def test_non_admin_cannot_name_itself_root() -> None:
    with pytest.raises(PermissionDenied) as err:
        os_caller(AuthConfig(), uid=NOBODY, gids=[NOBODY], environ={"ATOLL_USER": "root"})
    assert "ATOLL_USER=root is honoured only for admins; you are nobody" in str(err.value)


def test_non_admin_naming_itself_is_fine() -> None:
    caller = os_caller(AuthConfig(), uid=NOBODY, gids=[NOBODY], environ={"ATOLL_USER": "nobody"})
    assert (caller.name, caller.admin) == ("nobody", False)


def test_listed_admin_and_admin_group_member_may_override() -> None:
    listed = os_caller(AuthConfig(admins=("nobody",)), uid=NOBODY, gids=[], environ={"ATOLL_USER": "bob"})
    assert listed.name == "bob"
    group = grp.getgrgid(0).gr_name
    member = os_caller(
        AuthConfig(admin_group=group), uid=NOBODY, gids=[NOBODY, 0], environ={"ATOLL_USER": "bob"}
    )
    assert member.name == "bob"
    with pytest.raises(PermissionDenied):
        os_caller(AuthConfig(admin_group=group), uid=NOBODY, gids=[NOBODY], environ={"ATOLL_USER": "bob"})
    with pytest.raises(PermissionDenied):  # an unknown group makes nobody an admin
        os_caller(
            AuthConfig(admin_group="no-such-group-xyz"), uid=NOBODY, gids=[0], environ={"ATOLL_USER": "x"}
        )


def test_cli_refuses_forged_user_before_touching_the_store() -> None:
    """A real unprivileged process: ATOLL_USER=root is refused with one line, and no store is created."""
    need_root()
    need_tools("setpriv")
    home = Path(tempfile.mkdtemp(prefix="atoll-home-"))  # pytest's tmp tree is root-only
    home.chmod(0o755)
    os.chown(home, NOBODY, NOBODY)
    try:
        _forged_user_refused(home)
    finally:
        shutil.rmtree(home)


def _forged_user_refused(home: Path) -> None:
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path(__file__).parents[2]),
        "ATOLL_USER": "root",
    }
    base = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable]
    proc = subprocess.run(
        [*base, "-m", "provider", "volume", "list"], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "atoll: error: permission denied: ATOLL_USER=root is honoured only for admins; you are nobody "
        "(unset ATOLL_USER, or ask an admin)"
    ]
    assert not (home / ".local/share/atoll").exists()
    env["ATOLL_USER"] = "nobody"
    ok = subprocess.run(
        [*base, "-m", "provider", "-o", "json", "volume", "list"], env=env, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == []
