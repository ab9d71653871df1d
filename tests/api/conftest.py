"""``atoll serve`` for API tests: the real server under gunicorn, driven by the real OpenStack clients.

``api_server`` (module scope) starts ``python -m provider serve`` on a free 127.0.0.1 port with a fresh
store (qcow2 backend, SQLite catalog), creates projects and users, and hands out keystoneauth1 sessions:

    def test_something(api_server: ApiServer) -> None:
        sess = api_server.session("alice")                  # member of project alpha
        url = sess.get_endpoint(service_type="image")
        resp = sess.get(url + "/v2/images")

Users made for every server (password in ``api_server.passwords``):

    ===========  ========  =======
    user         project   role
    ===========  ========  =======
    alice        alpha     member
    anna         alpha     member
    carol        alpha     reader
    bob          beta      member
    admin        admin     admin
    ===========  ========  =======

``api_server.add_user(name, project, role)`` adds more; ``api_server.env`` is the store (``env.open()``
for in-process checks, ``env.cli(...)`` for the CLI on the same store); ``api_server.log()`` is the
server's output so far. Other test packages reuse it with ``from tests.api.conftest import api_server``
(or by importing :func:`start_server` for a server with their own configuration).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from provider import config as config_mod
from tests.conftest import StoreEnv

USERS = (
    ("alice", "alpha", "member"),
    ("anna", "alpha", "member"),
    ("carol", "alpha", "reader"),
    ("bob", "beta", "member"),
    ("admin", "admin", "admin"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ApiServer:
    url: str
    env: StoreEnv
    process: subprocess.Popen[bytes]
    log_path: Path
    passwords: dict[str, str] = field(default_factory=dict)
    projects: dict[str, str] = field(default_factory=dict)  # user -> project

    @property
    def auth_url(self) -> str:
        return self.url + "/v3"

    def add_user(self, name: str, project: str, role: str = "member") -> str:
        """Create ``project`` if needed and the user ``name`` with ``role`` on it; return the password."""
        store = self.env.open("root")
        if project not in {p.id for p in store.identity.list_projects()}:
            store.identity.create_project(project)
        password = secrets.token_urlsafe(12)
        store.identity.create_user(name, password, project, role)
        self.passwords[name] = password
        self.projects[name] = project
        return password

    def auth(self, user: str, project: str | None = None, password: str | None = None) -> v3.Password:
        return v3.Password(
            auth_url=self.auth_url,
            username=user,
            password=password or self.passwords[user],
            project_name=project or self.projects[user],
            user_domain_name="Default",
            project_domain_name="Default",
        )

    def session(
        self, user: str, project: str | None = None, password: str | None = None
    ) -> ks_session.Session:
        """A keystoneauth1 session that logs in as ``user`` (password auth) on its project."""
        return ks_session.Session(auth=self.auth(user, project, password))

    def token(self, user: str) -> str:
        token = self.session(user).get_token()
        assert token
        return str(token)

    def run_cli(
        self,
        user: str,
        tool: str,
        *args: str,
        check: bool = True,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """An OpenStack command line (``openstack``, ``cinder``, ``glance``) of the venv, authenticated as
        ``user`` by password on its project; ``env`` adds variables (an API version); ``input`` is its
        standard input (a pipe, as in a script: no terminal)."""
        environ = {
            **os.environ,
            "OS_AUTH_URL": self.auth_url,
            "OS_USERNAME": user,
            "OS_PASSWORD": self.passwords[user],
            "OS_PROJECT_NAME": self.projects[user],
            "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_DOMAIN_NAME": "Default",
            "OS_IDENTITY_API_VERSION": "3",
            **(env or {}),
        }
        exe = Path(sys.executable).with_name(tool)
        proc = subprocess.run(
            [str(exe), *args], env=environ, capture_output=True, text=True, timeout=600, input=input
        )
        if check:
            assert proc.returncode == 0, f"{tool} {' '.join(args)}: {proc.stderr[-2000:]}"
        return proc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def write_config(
    path: Path, port: int, api: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
) -> StoreEnv:
    """A qcow2 store with a SQLite catalog under ``path`` and an ``api:`` section for ``port``;
    ``extra`` adds top-level sections (e.g. ``images``)."""
    path.mkdir(parents=True, exist_ok=True)
    raw: dict[str, Any] = {
        **(extra or {}),
        "store": {"backend": "qcow2", "path": str(path / "store")},
        "auth": {"admins": ["root"]},
        "api": {"bind": f"127.0.0.1:{port}", "workers": 2, "threads": 8, **(api or {})},
    }
    config_path = path / "atoll.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    return StoreEnv(config_path, config_mod.load(config_path), "qcow2")


def start_server(
    path: Path, api: dict[str, Any] | None = None, users: bool = True, extra: dict[str, Any] | None = None
) -> ApiServer:
    """Start ``atoll serve`` on a fresh store under ``path`` and wait until its health check answers."""
    port = free_port()
    env = write_config(path, port, api, extra)
    log_path = path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "provider", "serve", "--log-level", "info"],
            env={**os.environ, "ATOLL_CONFIG": str(env.config_path)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ApiServer(url=f"http://127.0.0.1:{port}", env=env, process=proc, log_path=log_path)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"atoll serve exited with {proc.returncode}:\n{server.log()}")
        try:
            if requests.get(server.url + "/healthcheck", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"atoll serve did not come up:\n{server.log()}")
        time.sleep(0.1)
    if users:
        for name, project, role in USERS:
            server.add_user(name, project, role)
    return server


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = start_server(tmp_path_factory.mktemp("api"))
    try:
        yield server
    finally:
        server.stop()
