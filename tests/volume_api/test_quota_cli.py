"""``atoll quota show|set`` through the real CLI."""

from __future__ import annotations

from tests.conftest import StoreEnv


def test_quota_cli_show_set_and_refusals(api_env: StoreEnv) -> None:
    shown = api_env.json("quota", "show", user="alice")
    assert shown["project"] == "alice" and shown["limits"]["volumes"] == 10
    assert shown["usage"] == dict.fromkeys(shown["limits"], 0)

    table = api_env.cli("quota", "show", user="alice").stdout.decode()
    assert "gigabytes" in table and "unlimited" in table

    denied = api_env.cli("quota", "set", "alice", "--volumes", "3", user="alice", check=False)
    assert denied.returncode == 1 and b"only an admin" in denied.stderr
    assert (
        api_env.json("quota", "set", "alice", "--volumes", "3", "--object-bytes", "-1")["limits"]["volumes"]
        == 3
    )
    assert api_env.json("quota", "show", "alice", user="alice")["limits"]["volumes"] == 3

    empty = api_env.cli("quota", "set", "alice", check=False)
    assert empty.returncode == 2 and b"at least one limit" in empty.stderr
    bad = api_env.cli("quota", "set", "alice", "--volumes", "-5", check=False)
    assert bad.returncode == 1 and b"-1: unlimited" in bad.stderr
