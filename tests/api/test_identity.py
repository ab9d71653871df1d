"""Identity over HTTP with keystoneauth1 against the real server, and the identity CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from keystoneauth1 import exceptions as ks_exc
from sqlalchemy import select, update

from provider.catalog import schema as t
from provider.services.identity import hash_token
from tests.api.conftest import ApiServer


def test_version_discovery(api_server: ApiServer) -> None:
    root = requests.get(api_server.url + "/", timeout=10)
    assert root.status_code == 300
    assert root.json()["versions"][0] == {
        "id": "v2.12",  # the image tasks API (glance image-tasks); 2.10/2.11 are Glance's multi-store ones
        "status": "CURRENT",
        "links": [{"rel": "self", "href": api_server.url + "/v2/"}],
    }
    assert requests.get(api_server.url + "/v2", timeout=10).status_code == 200
    v3 = requests.get(api_server.url + "/v3", timeout=10).json()["version"]
    assert v3["status"] == "stable" and v3["id"].startswith("v3.")
    health = requests.get(api_server.url + "/healthcheck", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_password_login_gives_scoped_token_and_catalog(api_server: ApiServer) -> None:
    sess = api_server.session("alice")
    assert sess.get_project_id() == "alpha"
    assert sess.get_user_id()
    assert sess.get_endpoint(service_type="image", interface="public") == api_server.url
    access = sess.auth.get_access(sess)
    assert access.role_names == ["member"]
    assert access.project_name == "alpha"
    assert access.expires is not None
    assert {s["type"] for s in access.service_catalog.catalog} >= {"identity", "image"}


def test_login_by_ids(api_server: ApiServer) -> None:
    uid = api_server.session("bob").get_user_id()
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"id": uid, "password": api_server.passwords["bob"]}},
            },
            "scope": {"project": {"id": "beta"}},
        }
    }
    resp = requests.post(api_server.auth_url + "/auth/tokens", json=body, timeout=30)
    assert resp.status_code == 201
    assert resp.headers["X-Subject-Token"]
    assert resp.json()["token"]["project"] == {
        "id": "beta",
        "name": "beta",
        "domain": {"id": "default", "name": "Default"},
    }


@pytest.mark.parametrize(
    ("user", "password", "project"),
    [("alice", "wrong-password", "alpha"), ("nobody", "whatever-pw", "alpha"), ("alice", None, "beta")],
    ids=["wrong-password", "unknown-user", "project-without-role"],
)
def test_bad_credentials_are_401(
    api_server: ApiServer, user: str, password: str | None, project: str
) -> None:
    sess = api_server.session(user, project, password or api_server.passwords.get(user, "x"))
    with pytest.raises(ks_exc.Unauthorized):
        sess.get_token()


def test_validate_and_revoke(api_server: ApiServer) -> None:
    alice, bob, admin = (api_server.token(u) for u in ("alice", "bob", "admin"))
    url = api_server.auth_url + "/auth/tokens"
    mine = requests.get(url, headers={"X-Auth-Token": alice, "X-Subject-Token": alice}, timeout=10)
    assert mine.status_code == 200 and mine.json()["token"]["user"]["name"] == "alice"
    other = requests.get(url, headers={"X-Auth-Token": bob, "X-Subject-Token": alice}, timeout=10)
    assert other.status_code == 403
    assert requests.head(url, headers={"X-Auth-Token": admin, "X-Subject-Token": alice}, timeout=10).ok
    gone = requests.delete(url, headers={"X-Auth-Token": alice, "X-Subject-Token": alice}, timeout=10)
    assert gone.status_code == 204
    after = requests.get(api_server.auth_url + "/auth/catalog", headers={"X-Auth-Token": alice}, timeout=10)
    assert after.status_code == 401
    assert "revoked" in after.json()["error"]["message"]


def test_expired_token_is_401(api_server: ApiServer) -> None:
    token = api_server.token("anna")
    catalog = api_server.env.open().catalog
    with catalog.write() as conn:
        conn.execute(
            update(t.tokens)
            .where(t.tokens.c.token_hash == hash_token(token))
            .values(expires_at="2000-01-01T00:00:00.000000Z")
        )
    resp = requests.get(api_server.auth_url + "/auth/catalog", headers={"X-Auth-Token": token}, timeout=10)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == 401


def test_deleting_a_user_revokes_its_tokens(api_server: ApiServer) -> None:
    api_server.add_user("dave", "delta", "member")
    token = api_server.token("dave")
    headers = {"X-Auth-Token": token}
    assert requests.get(api_server.auth_url + "/auth/catalog", headers=headers, timeout=10).ok
    api_server.env.cli("user", "delete", "dave")
    assert requests.get(api_server.auth_url + "/auth/catalog", headers=headers, timeout=10).status_code == 401
    with api_server.env.open().catalog.read() as conn:
        assert (
            conn.execute(select(t.tokens).where(t.tokens.c.token_hash == hash_token(token))).first() is None
        )


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "application/json"}, b"{not json", 400),
        ({"Content-Type": "text/plain"}, b"{}", 415),
        ({"Content-Type": "application/json"}, b'{"auth": {}}', 400),
        ({"Content-Type": "application/json"}, b"x" * (2 << 20), 413),
    ],
    ids=["malformed-json", "wrong-content-type", "missing-fields", "too-large"],
)
def test_bad_requests_get_json_errors(
    api_server: ApiServer, headers: dict[str, str], body: bytes, status: int
) -> None:
    resp = requests.post(api_server.auth_url + "/auth/tokens", data=body, headers=headers, timeout=30)
    assert resp.status_code == status
    error = resp.json()["error"]
    assert error["code"] == status and error["title"] and error["message"]
    assert resp.headers["X-Openstack-Request-Id"].startswith("req-")


def test_unknown_route_and_missing_token(api_server: ApiServer) -> None:
    missing = requests.get(api_server.url + "/no/such/thing", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == 404
    anonymous = requests.get(api_server.auth_url + "/auth/catalog", timeout=10)
    assert anonymous.status_code == 401
    assert "X-Auth-Token" in anonymous.json()["error"]["message"]


def test_logs_carry_request_ids_and_no_secrets(api_server: ApiServer) -> None:
    token = api_server.token("alice")
    resp = requests.get(api_server.auth_url + "/auth/catalog", headers={"X-Auth-Token": token}, timeout=10)
    rid = resp.headers["X-Openstack-Request-Id"]
    deadline = time.monotonic() + 30  # the access line is written after the response is sent
    while rid not in (log := api_server.log()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rid in log
    assert token not in log
    assert all(pw not in log for pw in api_server.passwords.values())


def test_cli_projects_and_users(api_server: ApiServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = api_server.env
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery\n")
    env.cli("project", "create", "gamma")
    created = env.json(
        "user", "create", "erin", "--project", "gamma", "--role", "reader", "--password-file", str(pw)
    )
    assert created["roles"] == [{"project": "gamma", "role": "reader"}]
    users = {u["name"]: u for u in env.json("user", "list")}
    assert users["erin"]["roles"] == [{"project": "gamma", "role": "reader"}]
    assert "gamma" in {p["id"] for p in env.json("project", "list")}
    with env.open().catalog.read() as conn:
        stored = conn.execute(select(t.users.c.password_hash).where(t.users.c.name == "erin")).scalar_one()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    api_server.passwords["erin"], api_server.projects["erin"] = "correct horse battery", "gamma"
    assert api_server.session("erin").get_project_id() == "gamma"
    dup = env.cli("user", "create", "erin", "--project", "gamma", "--password-file", str(pw), check=False)
    assert dup.returncode == 1 and b"already exists" in dup.stderr
    short = tmp_path / "short"
    short.write_text("abc")
    bad = env.cli("user", "create", "frank", "--project", "gamma", "--password-file", str(short), check=False)
    assert bad.returncode == 1 and b"at least 8" in bad.stderr
    nonadmin = env.cli("project", "create", "zeta", user="mallory", check=False)
    assert nonadmin.returncode == 1 and b"only an admin" in nonadmin.stderr
    assert json.loads(env.cli("-o", "json", "user", "delete", "erin").stdout) == {"deleted": "erin"}


def test_projects_as_clients_resolve_them(api_server: ApiServer, tmp_path: Path) -> None:
    """Keystone's answers: one's own project, 403 for another's (which openstack image add project
    takes as "use the name as given"), lists to admins, one's own projects to anyone."""
    alice = api_server.session("alice")
    admin = api_server.session("admin")
    v3 = api_server.url + "/v3"
    own = alice.get(f"{v3}/projects/alpha", raise_exc=False)
    assert own.status_code == 200 and own.json()["project"]["name"] == "alpha"
    assert alice.get(f"{v3}/projects/beta", raise_exc=False).status_code == 403
    assert alice.get(f"{v3}/projects?name=beta", raise_exc=False).status_code == 403
    assert admin.get(f"{v3}/projects/nope", raise_exc=False).status_code == 404
    named = admin.get(f"{v3}/projects?name=beta").json()["projects"]
    assert [p["id"] for p in named] == ["beta"]
    assert [p["id"] for p in alice.get(f"{v3}/auth/projects").json()["projects"]] == ["alpha"]
    bob_id = api_server.session("bob").get_user_id()
    assert alice.get(f"{v3}/users/{bob_id}/projects", raise_exc=False).status_code == 403
    assert [p["id"] for p in admin.get(f"{v3}/users/{bob_id}/projects").json()["projects"]] == ["beta"]
    # sharing an image with a project by name, accepted by its member, all through the openstack CLI
    disk = tmp_path / "shared.raw"
    disk.write_bytes(b"shared image" * 1000)
    made = api_server.run_cli(
        "alice", "openstack", "image", "create", "--file", str(disk), "shared-img", "-f", "json"
    )
    image_id = json.loads(made.stdout)["id"]
    api_server.run_cli("alice", "openstack", "image", "add", "project", "shared-img", "beta")
    api_server.run_cli("bob", "openstack", "image", "set", "--accept", image_id)
    listed = json.loads(api_server.run_cli("bob", "openstack", "image", "list", "-f", "json").stdout)
    assert image_id in [i["ID"] for i in listed]
    mine = json.loads(
        api_server.run_cli("bob", "openstack", "project", "list", "--my-projects", "-f", "json").stdout
    )
    assert [p["ID"] for p in mine] == ["beta"]
    api_server.run_cli("alice", "openstack", "image", "delete", image_id)


def test_directory_as_openstack_client_reads_it(api_server: ApiServer) -> None:
    """openstack user|role|domain list|show and role assignment list: admins read the directory, a member
    reads itself and its own assignments, and is refused the rest (403, as Keystone's default policy)."""

    def table(user: str, *args: str) -> list[dict[str, Any]]:
        return list(json.loads(api_server.run_cli(user, "openstack", *args, "-f", "json").stdout))

    users = {u["Name"] for u in table("admin", "user", "list")}
    assert {"alice", "bob", "admin"} <= users
    shown = json.loads(api_server.run_cli("alice", "openstack", "user", "show", "alice", "-f", "json").stdout)
    assert (shown["name"], shown["default_project_id"], shown["domain_id"]) == ("alice", "alpha", "default")
    assert [r["Name"] for r in table("alice", "role", "list")] == ["admin", "member", "reader"]
    assert [d["Name"] for d in table("alice", "domain", "list")] == ["Default"]
    mine = table("alice", "role", "assignment", "list", "--user", "alice", "--names")
    assert [(a["Role"], a["User"], a["Project"]) for a in mine] == [
        ("member", "alice@Default", "alpha@Default")
    ]
    everyone = table("admin", "role", "assignment", "list", "--project", "alpha", "--names")
    assert ("reader", "carol@Default") in {(a["Role"], a["User"]) for a in everyone}
    assert all(a["Project"] == "alpha@Default" for a in everyone)
    for args in (("user", "list"), ("user", "show", "bob"), ("role", "assignment", "list")):
        refused = api_server.run_cli("alice", "openstack", *args, check=False)
        assert refused.returncode != 0 and "403" in refused.stderr, args
