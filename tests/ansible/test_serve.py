"""The role's atoll-serve unit: written from the role variables, verified by systemd-analyze, and the
server it describes started by hand (systemd is not PID 1 here) and answering."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from tests.ansible.conftest import Node, apply, node_variables
from tests.api.conftest import free_port
from tests.helpers import need_tools

if TYPE_CHECKING:
    from testinfra.host import Host

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def serve_node(node: Node) -> Node:
    root = node.root
    port = free_port()
    variables = node_variables(
        root,
        atoll_config_path=str(root / "etc" / "atoll-serve" / "atoll.yaml"),
        atoll_store_path=str(root / "srv" / "atoll-serve"),
        atoll_ganeti_install=False,
        atoll_serve_enabled=True,
        atoll_serve_bind=f"127.0.0.1:{port}",
        atoll_serve_workers=3,
        atoll_serve_unit_dir=str(root / "etc" / "systemd" / "system"),
    )
    return apply(root, variables, "serve")


def _unit(node: Node) -> Path:
    return Path(str(node.variables["atoll_serve_unit_dir"])) / "atoll-serve.service"


def test_unit_is_written_from_the_variables(serve_node: Node, host: Host) -> None:
    assert serve_node.second.total("changed") == 0, serve_node.second.explain()
    unit = host.file(str(_unit(serve_node)))
    assert unit.exists and unit.mode == 0o644 and unit.user == "root"
    text = unit.content_string
    bind = serve_node.var("atoll_serve_bind")
    assert f"serve --bind {bind} --workers 3" in text
    assert f"--config {serve_node.config}" in text
    assert "WantedBy=multi-user.target" in text
    config = host.file(serve_node.config).content_string
    assert f'bind: "{bind}"' in config and "workers: 3" in config


def test_systemd_analyze_verify(serve_node: Node) -> None:
    need_tools("systemd-analyze")
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(_unit(serve_node))], capture_output=True, text=True
    )
    problems = [line for line in proc.stderr.splitlines() if "atoll-serve.service" in line]
    assert proc.returncode == 0 and not problems, proc.stderr


@pytest.fixture
def started(serve_node: Node) -> Iterator[str]:
    """The unit's ExecStart run by hand, with its Environment."""
    text = _unit(serve_node).read_text()
    argv = shlex.split(
        next(line for line in text.splitlines() if line.startswith("ExecStart=")).split("=", 1)[1]
    )
    env = dict(line.split("=", 2)[1:] for line in text.splitlines() if line.startswith("Environment="))
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = "http://" + serve_node.var("atoll_serve_bind")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "atoll serve exited"
            try:
                if requests.get(url + "/healthcheck", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "atoll serve did not answer"
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_the_unit_command_serves(started: str) -> None:
    versions = requests.get(started + "/", timeout=10)
    assert versions.status_code == 300 and versions.json()["versions"]
    assert requests.get(started + "/v3", timeout=10).json()["version"]["status"] == "stable"
