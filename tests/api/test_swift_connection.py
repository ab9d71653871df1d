"""Request bodies read straight from the socket (``provider/api/body.py``) keep HTTP/1.1 connections
sound: a request pipelined behind a body is answered on the same connection, and a body the server
refuses before reading it is drained (small) or ends the connection (large), never read as requests."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
import swiftclient

from tests.api.conftest import ApiServer
from tests.api.test_swift import alice  # noqa: F401  (fixture)
from tests.conftest import write_disk

MiB = 1 << 20


def read_response(f: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    status = int(f.readline().split()[1])
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        key, _, value = line.decode().partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers, f.read(int(headers.get("content-length", 0)))


def request(conn: swiftclient.Connection, method: str, path: str, body: bytes = b"") -> bytes:
    url, token = conn.get_auth()
    prefix = "/" + url.split("//", 1)[1].split("/", 1)[1]
    head = f"{method} {prefix}{path} HTTP/1.1\r\nHost: atoll\r\nX-Auth-Token: {token}\r\n"
    if method in ("PUT", "POST"):
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


@pytest.fixture
def connection(alice: swiftclient.Connection) -> Iterator[socket.socket]:  # noqa: F811
    url, _ = alice.get_auth()
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as s:
        yield s


@pytest.mark.parametrize("size", [100, 5 * MiB + 123], ids=["in-first-read", "streamed"])
def test_request_pipelined_behind_a_body(
    alice: swiftclient.Connection,  # noqa: F811
    connection: socket.socket,
    size: int,
) -> None:
    alice.put_container("pipe")
    data = os.urandom(size)
    connection.sendall(request(alice, "PUT", "/pipe/o", data) + request(alice, "GET", "/pipe/o"))
    f = connection.makefile("rb")
    code, headers, _ = read_response(f)
    assert code == 201
    assert headers["etag"].strip('"') == hashlib.md5(data).hexdigest()
    code, _, body = read_response(f)
    assert code == 200
    assert body == data, "the GET behind the body was read as a request, not as body bytes"


@pytest.fixture
def registered(api_server: ApiServer, alice: swiftclient.Connection, tmp_path: Path) -> Iterator[bytes]:  # noqa: F811
    """``reg/img.raw``, registered as an image (a PUT may not replace it); yields its bytes."""
    project = api_server.projects["alice"]
    disk = write_disk(tmp_path / "disk.raw", 4 * MiB)
    alice.put_container("reg")
    api_server.env.cli("object", "upload", "reg/img.raw", str(disk), user=project)
    api_server.env.cli("image", "register", "reg/img.raw", "--name", "reg-img", user=project)
    alice.put_object("reg", "other", b"still here")
    yield disk.read_bytes()
    api_server.env.cli("image", "unregister", "reg-img", user=project)


@pytest.mark.parametrize("size", [32 << 10, 3 * MiB], ids=["drained", "too-large-to-drain"])
def test_body_refused_before_it_is_read(
    alice: swiftclient.Connection,  # noqa: F811
    connection: socket.socket,
    registered: bytes,
    size: int,
) -> None:
    body = os.urandom(size)
    connection.sendall(request(alice, "PUT", "/reg/img.raw", body) + request(alice, "GET", "/reg/other"))
    f = connection.makefile("rb")
    code, _, _ = read_response(f)
    assert code == 409, "an object registered as an image is not replaced"
    if size <= 64 << 10:  # gunicorn drains a small unread body and serves the next request
        assert read_response(f)[::2] == (200, b"still here")
    else:  # past its drain limit it closes the connection: nothing of the body is taken as a request
        assert f.read() == b""
    assert alice.get_object("reg", "img.raw")[1] == registered
