"""Swift temporary URLs, made by ``swift tempurl`` and swiftclient's ``generate_temp_url``, used without a
token against the real server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import swiftclient
from swiftclient.utils import generate_temp_url

from tests.api.conftest import ApiServer
from tests.api.test_swift import swift

KEY, KEY2 = "tempurl-key-of-alpha", "the-next-key-of-alpha"
NAME = "dir/file name.bin"


@pytest.fixture
def alice(api_server: ApiServer) -> Iterator[swiftclient.Connection]:
    """alice's account with a Temp-URL-Key (set by the ``swift post`` CLI) and container ``c``."""
    conn = swift(api_server, "alice")
    swift_cli(api_server, "post", "-m", f"Temp-URL-Key:{KEY}")
    conn.put_container("c")
    yield conn
    for o in conn.get_container("c", full_listing=True)[1]:
        conn.delete_object("c", o["name"])
    conn.delete_container("c")
    conn.post_account(
        {"X-Remove-Account-Meta-Temp-URL-Key": "x", "X-Remove-Account-Meta-Temp-URL-Key-2": "x"}
    )


def swift_cli(server: ApiServer, *args: str) -> str:
    auth = ["-A", server.url + "/auth/v1.0", "-U", "alpha:alice", f"--key={server.passwords['alice']}"]
    exe = Path(sys.executable).with_name("swift")
    proc = subprocess.run([str(exe), *auth, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def path_of(conn: swiftclient.Connection, name: str = NAME, container: str = "c") -> str:
    """The object's path as a temporary URL signs it: ``/v1/AUTH_<project>/<container>/<name>``."""
    url, _ = conn.get_auth()
    return f"{urlsplit(url).path}/{container}/{name}"


def call(server: ApiServer, method: str, signed: str, **kw) -> requests.Response:  # type: ignore[no-untyped-def]
    """``signed`` as a client sends it: the path percent-encoded, no token."""
    path, _, query = signed.partition("?")
    return requests.request(method, f"{server.url}{requests.utils.quote(path)}?{query}", timeout=60, **kw)


def test_a_signed_url_reads_one_object_without_a_token(
    api_server: ApiServer, alice: swiftclient.Connection
) -> None:
    data = os.urandom(300_000)
    alice.put_object("c", NAME, data)
    signed = swift_cli(api_server, "tempurl", "GET", "60", path_of(alice), KEY)  # the CLI: sha256 hex
    got = call(api_server, "GET", signed)
    assert got.status_code == 200 and got.content == data
    assert got.headers["Content-Disposition"].startswith('attachment; filename="file name.bin"')
    assert call(api_server, "HEAD", signed).status_code == 200  # a GET signature allows HEAD
    assert call(api_server, "DELETE", signed).status_code == 401  # not the method signed
    other = path_of(alice, "dir/other")
    alice.put_object("c", "dir/other", b"x")
    assert call(api_server, "GET", signed.replace(path_of(alice), other)).status_code == 401
    assert call(api_server, "GET", signed + "&inline").headers["Content-Disposition"] == "inline"
    named = call(api_server, "GET", signed + "&filename=report.pdf")
    assert named.headers["Content-Disposition"].startswith('attachment; filename="report.pdf"')
    assert "temp_url_sig=" + signed.split("temp_url_sig=")[1].split("&")[0] not in api_server.log()
    assert "temp_url_sig=***" in api_server.log()  # logged, with the credential masked


def test_digests_expiry_prefix_and_address_range(
    api_server: ApiServer, alice: swiftclient.Connection
) -> None:
    alice.put_object("c", NAME, b"payload")
    path = path_of(alice)
    for digest in ("sha1", "sha256", "sha512"):
        signed = generate_temp_url(path, 60, KEY, "GET", digest=digest)
        assert call(api_server, "GET", signed).content == b"payload", digest
    iso = generate_temp_url(path, 60, KEY, "GET", iso8601=True)
    assert "Z" in iso and call(api_server, "GET", iso).status_code == 200
    expired = generate_temp_url(path, int(time.time()) - 5, KEY, "GET", absolute=True)
    assert "expired" in call(api_server, "GET", expired).json()["error"]["message"]
    wrong = generate_temp_url(path, 60, "not-the-key", "GET")
    assert call(api_server, "GET", wrong).status_code == 401
    prefix = generate_temp_url(path_of(alice, "dir/"), 60, KEY, "GET", prefix=True)
    assert call(api_server, "GET", prefix.replace("dir/?", f"{NAME}?", 1)).status_code == 200
    alice.put_object("c", "top", b"outside")
    assert call(api_server, "GET", prefix.replace("dir/?", "top?", 1)).status_code == 401
    here = generate_temp_url(path, 60, KEY, "GET", ip_range="127.0.0.0/8")
    assert call(api_server, "GET", here).status_code == 200
    elsewhere = generate_temp_url(path, 60, KEY, "GET", ip_range="10.0.0.0/8")
    assert call(api_server, "GET", elsewhere).status_code == 401
    assert "tempurl" in requests.get(api_server.url + "/info", timeout=10).json()


def test_signed_put_uploads_bytes_only_and_keys_rotate(
    api_server: ApiServer, alice: swiftclient.Connection
) -> None:
    path = path_of(alice, "up/loaded")
    put = generate_temp_url(path, 60, KEY, "PUT", digest="sha512")
    assert call(api_server, "PUT", put, data=b"sent without a token").status_code == 201
    assert alice.get_object("c", "up/loaded")[1] == b"sent without a token"
    alice.put_object("c", "secret", b"not for the holder of the URL")
    copy = generate_temp_url(path_of(alice, "up/copy"), 60, KEY, "PUT")
    refused = call(api_server, "PUT", copy, data=b"", headers={"X-Copy-From": "/c/secret"})
    assert refused.status_code == 400
    assert "up/copy" not in [o["name"] for o in alice.get_container("c")[1]]
    delete = generate_temp_url(path, 60, KEY, "DELETE")
    alice.post_account({"X-Account-Meta-Temp-URL-Key-2": KEY2, "X-Account-Meta-Temp-URL-Key": KEY2})
    assert call(api_server, "DELETE", delete).status_code == 401  # the old key is gone
    assert call(api_server, "DELETE", generate_temp_url(path, 60, KEY2, "DELETE")).status_code == 204
    bob = swift(api_server, "bob")  # no key on bob's account: nothing signed opens it
    bob.put_container("b")
    bob.put_object("b", "o", b"bob's")
    bobs = path_of(bob, "o", "b")
    assert call(api_server, "GET", generate_temp_url(bobs, 60, KEY, "GET")).status_code == 401
    bob.delete_object("b", "o")
    bob.delete_container("b")


def test_a_reader_neither_writes_nor_sees_the_key(
    api_server: ApiServer, alice: swiftclient.Connection
) -> None:
    """carol has the reader role on alice's project: she reads, writes nothing through any service, and
    does not see the Temp-URL-Key (with it she could sign the writes her role may not make)."""
    carol = swift(api_server, "carol")
    alice.put_object("c", "shared", b"readable")
    assert carol.get_object("c", "shared")[1] == b"readable"
    assert alice.head_account()["x-account-meta-temp-url-key"] == KEY
    assert "x-account-meta-temp-url-key" not in carol.head_account()
    for attempt in (
        lambda: carol.put_object("c", "by-carol", b"no"),
        lambda: carol.post_account({"X-Account-Meta-Temp-URL-Key": "mine"}),
        lambda: carol.delete_object("c", "shared"),
    ):
        with pytest.raises(swiftclient.ClientException) as refused:
            attempt()
        assert refused.value.http_status == 403
    token, project = api_server.token("carol"), api_server.projects["carol"]
    volumes = f"{api_server.url}/volume/v3/{project}/volumes"
    made = requests.post(volumes, json={"volume": {"size": 1}}, headers={"X-Auth-Token": token}, timeout=30)
    assert made.status_code == 403 and "reader" in made.json()["error"]["message"]
    assert requests.get(volumes, headers={"X-Auth-Token": token}, timeout=30).status_code == 200
    revoked = requests.delete(
        f"{api_server.url}/v3/auth/tokens",
        headers={"X-Auth-Token": token, "X-Subject-Token": token},
        timeout=30,
    )
    assert revoked.status_code == 204  # her own token she may still revoke
    assert alice.head_account()["x-account-meta-temp-url-key"] == KEY
