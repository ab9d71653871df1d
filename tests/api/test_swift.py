"""The Object API with python-swiftclient (library and ``swift`` CLI) against the real server."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import swiftclient
from swiftclient.exceptions import ClientException

from tests.api.conftest import ApiServer
from tests.api.helpers import recorded_sha256

MiB = 1 << 20


def swift(api_server: ApiServer, user: str) -> swiftclient.Connection:
    """Swift v1 auth (``-A …/auth/v1.0 -U project:user -K …``)."""
    return swiftclient.Connection(
        authurl=api_server.url + "/auth/v1.0",
        user=f"{api_server.projects[user]}:{user}",
        key=api_server.passwords[user],
        retries=0,
    )


def raw(conn: swiftclient.Connection, method: str, path: str = "", **kw) -> requests.Response:  # type: ignore[no-untyped-def]
    url, token = conn.get_auth()
    headers = {"X-Auth-Token": token, **kw.pop("headers", {})}
    return requests.request(method, url + path, headers=headers, timeout=60, **kw)


def status(exc: pytest.ExceptionInfo[ClientException]) -> int:
    return int(exc.value.http_status or 0)


@pytest.fixture
def alice(api_server: ApiServer) -> Iterator[swiftclient.Connection]:
    conn = swift(api_server, "alice")
    yield conn
    for c in conn.get_account(full_listing=True)[1]:
        for o in conn.get_container(c["name"], full_listing=True)[1]:
            conn.delete_object(c["name"], o["name"])
        conn.delete_container(c["name"])


def test_v1_auth_keystone_catalog_and_info(api_server: ApiServer, alice: swiftclient.Connection) -> None:
    url, _ = alice.get_auth()
    assert url.startswith(api_server.url + "/v1/AUTH_")
    sess = api_server.session("alice")
    assert sess.get_endpoint(service_type="object-store") == url
    via_keystone = swiftclient.Connection(session=sess)
    via_keystone.put_container("k")
    assert [c["name"] for c in alice.get_account()[1]] == ["k"]
    info = requests.get(api_server.url + "/info", timeout=10).json()
    assert info["swift"]["container_listing_limit"] == 10000
    assert info["atoll"]["hashmap"] == {"block_size": 4 * MiB, "block_hash": "sha256"}
    bad = requests.get(
        api_server.url + "/auth/v1.0", headers={"X-Auth-User": "alpha:alice", "X-Auth-Key": "no"}
    )
    assert bad.status_code == 401


def test_objects_round_trip(api_server: ApiServer, alice: swiftclient.Connection) -> None:
    data = os.urandom(3 * MiB + 5)
    alice.put_container("c", headers={"X-Container-Meta-Color": "blue"})

    def chunks() -> Iterator[bytes]:  # no length: chunked transfer encoding
        for off in range(0, len(data), 1 << 16):
            yield data[off : off + (1 << 16)]

    etag = alice.put_object("c", "dir/obj.bin", chunks(), headers={"X-Object-Meta-Origin": "test"})
    assert etag == hashlib.md5(data).hexdigest()
    head = alice.head_object("c", "dir/obj.bin")
    res = api_server.env.open("root").objects.show(head["x-atoll-id"])
    assert (res.size, head["content-length"], head["x-object-meta-origin"]) == (
        len(data),
        str(len(data)),
        "test",
    )
    assert recorded_sha256(api_server, res.id) == hashlib.sha256(data).hexdigest()
    assert alice.get_object("c", "dir/obj.bin")[1] == data
    assert alice.get_object("c", "dir/obj.bin", headers={"Range": "bytes=10-19"})[1] == data[10:20]
    assert alice.get_object("c", "dir/obj.bin", headers={"Range": "bytes=-7"})[1] == data[-7:]
    with pytest.raises(ClientException) as err:
        alice.get_object("c", "dir/obj.bin", headers={"If-None-Match": etag})
    assert status(err) == 304
    with pytest.raises(ClientException) as err:
        alice.get_object("c", "dir/obj.bin", headers={"If-Match": "0" * 32})
    assert status(err) == 412
    alice.post_object("c", "dir/obj.bin", headers={"X-Object-Meta-New": "1"})
    head = alice.head_object("c", "dir/obj.bin")
    assert head["x-object-meta-new"] == "1" and "x-object-meta-origin" not in head
    alice.put_object("c", "dir/obj.bin", b"replaced")  # Swift replaces
    assert alice.get_object("c", "dir/obj.bin")[1] == b"replaced"
    head = alice.head_container("c")
    assert head["x-container-meta-color"] == "blue" and head["x-storage-policy"] == "Policy-0"
    with pytest.raises(ClientException) as err:
        alice.delete_container("c")
    assert status(err) == 409
    alice.delete_object("c", "dir/obj.bin")
    with pytest.raises(ClientException) as err:
        alice.head_object("c", "dir/obj.bin")
    assert status(err) == 404


def test_listings(alice: swiftclient.Connection) -> None:
    alice.put_container("l")
    for name in ("a", "b/1", "b/2", "c"):
        alice.put_object("l", name, name.encode())
    names = lambda **kw: [o.get("name") or o["subdir"] for o in alice.get_container("l", **kw)[1]]  # noqa: E731
    assert names() == ["a", "b/1", "b/2", "c"]
    assert names(delimiter="/") == ["a", "b/", "c"]
    assert names(prefix="b/") == ["b/1", "b/2"]
    assert names(marker="a", end_marker="c") == ["b/1", "b/2"]
    assert names(limit=1) == ["a"]
    assert raw(alice, "GET", "/l", params={"format": "plain"}).text == "a\nb/1\nb/2\nc\n"
    xml = raw(alice, "GET", "/l", params={"format": "xml", "delimiter": "/"}).text
    assert "<name>a</name>" in xml and '<subdir name="b/">' in xml
    for limit in ("-1", "10001", "x"):
        assert raw(alice, "GET", "/l", params={"limit": limit}).status_code == 400


def test_copy_is_thin_and_keeps_one_id_per_object(
    api_server: ApiServer, alice: swiftclient.Connection
) -> None:
    url, _ = alice.get_auth()
    project = url.rsplit("AUTH_", 1)[1]
    store = api_server.env.open(project)
    alice.put_container("big")
    big = Path(api_server.log_path.parent / "one-gib")
    with open(big, "wb") as f:  # 1 GiB, sparse, stored through the same store
        f.seek((1 << 30) - 4)
        f.write(b"tail")
    with open(big, "rb") as f:
        src = store.objects.upload("big/1g", f)
    big.unlink()
    backend = store.backend()
    before = sorted(backend.list_locators())
    used = sum(backend.allocated_bytes(x) for x in before)
    alice.copy_object("big", "1g", "/big/copy1")
    alice.put_object("big", "copy2", b"", headers={"X-Copy-From": "/big/1g"})
    assert sorted(backend.list_locators()) == before, "no data was copied"
    assert sum(backend.allocated_bytes(x) for x in before) - used < MiB
    ids = {alice.head_object("big", n)["x-atoll-id"] for n in ("1g", "copy1", "copy2")}
    assert len(ids) == 3 and src.id in ids
    assert alice.get_object("big", "copy2", headers={"Range": "bytes=-4"})[1] == b"tail"


def test_bad_input(api_server: ApiServer, alice: swiftclient.Connection) -> None:
    alice.put_container("b")
    with pytest.raises(ClientException) as err:
        alice.get_object("nope", "x")
    assert status(err) == 404
    with pytest.raises(ClientException) as err:
        alice.put_object("nope", "x", b"1")
    assert status(err) == 404
    for name in ("%2E%2E/x", "a/%2E%2E/x", "a%00b", "n" * 2000):
        assert raw(alice, "PUT", f"/b/{name}", data=b"1").status_code == 400, name
    assert raw(alice, "PUT", "/a%2Fb", data=b"").status_code in (400, 404)
    alice.put_object("b", "o", b"0123456789")
    assert raw(alice, "GET", "/b/o", headers={"Range": "bytes=10-20"}).status_code == 416
    with pytest.raises(ClientException) as err:
        alice.put_object("b", "bad-etag", b"data", etag="0" * 32)
    assert status(err) == 422
    assert [o["name"] for o in alice.get_container("b")[1]] == ["o"], "nothing stored"
    url, token = alice.get_auth()
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port))) as s:  # declares 100 bytes, sends 10, hangs up
        path = url.split(port, 1)[1] + "/b/short"
        s.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nContent-Length: 100\r\n\r\n".encode()
        )
        s.sendall(b"0123456789")
        s.shutdown(socket.SHUT_WR)
        s.recv(4096)
    assert [o["name"] for o in alice.get_container("b")[1]] == ["o"], "nothing stored"


def test_read_acls_and_private_accounts(api_server: ApiServer, alice: swiftclient.Connection) -> None:
    bob = swift(api_server, "bob")
    alice.put_container("shared")
    alice.put_object("shared", "doc", b"for bob")
    url, _ = alice.get_auth()
    _, bob_token = bob.get_auth()
    get = lambda p: requests.get(url + p, headers={"X-Auth-Token": bob_token}, timeout=10)  # noqa: E731
    assert get("/shared/doc").status_code == 404
    assert get("").status_code == 403
    alice.post_container("shared", headers={"X-Container-Read": api_server.projects["bob"]})
    assert get("/shared/doc").content == b"for bob"
    assert [o["name"] for o in get("/shared?format=json").json()] == ["doc"]
    assert (
        requests.delete(url + "/shared/doc", headers={"X-Auth-Token": bob_token}, timeout=10).status_code
        == 403
    )


def test_swift_cli_upload_and_download(
    api_server: ApiServer, alice: swiftclient.Connection, tmp_path: Path
) -> None:
    src = tmp_path / "disk.raw"
    src.write_bytes(os.urandom(2 * MiB))
    key = api_server.passwords["alice"]
    auth = ["-A", api_server.url + "/auth/v1.0", "-U", "alpha:alice", f"--key={key}"]

    def swift(*args: str, ok: bool = True) -> str:
        done = subprocess.run([sys.executable, "-m", "swiftclient.shell", *auth, *args], capture_output=True)
        failed = f"swift {args[0]}: {done.stderr.decode()}\n{api_server.log()[-3000:]}"
        assert (done.returncode == 0) == ok, failed
        return done.stdout.decode() + done.stderr.decode()

    swift("upload", "--object-name", "disk.raw", "images", str(src))
    assert swift("list", "images").split() == ["disk.raw"]
    out = tmp_path / "back.raw"
    swift("download", "images", "disk.raw", "-o", str(out))
    assert out.read_bytes() == src.read_bytes()
    # segmented uploads (DLO, SLO) are refused, not kept as an object that would read back wrong
    for extra in ([], ["--use-slo"]):
        said = swift(
            "upload", "-S", str(MiB), *extra, "--object-name", "seg.raw", "images", str(src), ok=False
        )
        assert "400 Bad Request" in said and "seg.raw" not in swift("list", "images").split()
    with pytest.raises(ClientException) as err:
        alice.put_object("images", "dlo", b"", headers={"X-Object-Manifest": "images_segments/x"})
    assert err.value.http_status == 400 and b"segmented objects" in err.value.http_response_content


def test_snapshots_are_objects_with_their_resource_id(
    api_server: ApiServer, alice: swiftclient.Connection
) -> None:
    url, _ = alice.get_auth()
    store = api_server.env.open(url.rsplit("AUTH_", 1)[1])
    data = os.urandom(MiB)
    alice.put_container("img")
    alice.put_object("img", "base", data)
    store.volumes.create("snapvol", source="img/base", size=2 * MiB)
    snap = store.volumes.snapshot("snapvol", "snap1")  # on qcow2: a frozen overlay, read flattened
    head, body = alice.get_object("snapshots", "snap1")
    assert head["x-atoll-id"] == snap.id and body == data + bytes(MiB)
    assert alice.get_object("snapshots", "snap1", headers={"Range": "bytes=1048570-1048579"})[1] == data[
        -6:
    ] + bytes(4)
    assert "snap1" in [o["name"] for o in alice.get_container("snapshots")[1]]
    store.images.delete("snap1")
    store.volumes.delete("snapvol")
