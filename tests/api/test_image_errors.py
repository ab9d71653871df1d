"""Bad input to the Image API: each one a clear JSON error, and nothing left behind."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from glanceclient import exc as glance_exc
from glanceclient.v2 import client as glance_client

from tests.api.conftest import ApiServer, start_server
from tests.api.helpers import data_files, image_status, new_image, raw_upload

LIMIT = 8 << 20
PROTECTIONS = {
    "x_billing_*": {
        "create": ["admin"],
        "read": ["admin", "member"],
        "update": ["admin"],
        "delete": ["admin"],
    },
    "x_open_*": {"create": ["@"], "read": ["@"], "update": ["@"], "delete": ["@"]},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    srv = start_server(
        tmp_path_factory.mktemp("api-errors"),
        api={"max_image_size": LIMIT},
        extra={"images": {"property_protections": PROTECTIONS}},
    )
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [
        ("POST", "/v2/images", {"Content-Type": "application/json"}, b"{oops", 400),
        ("POST", "/v2/images", {"Content-Type": "text/plain"}, b"{}", 415),
        ("POST", "/v2/images", {"Content-Type": "application/json"}, b'{"status": "active"}', 403),
        ("POST", "/v2/images", {"Content-Type": "application/json"}, b'{"disk_format": "floppy"}', 400),
        ("PATCH", "/v2/images/{id}", {"Content-Type": "application/json"}, b"[]", 415),
        (
            "PATCH",
            "/v2/images/{id}",
            {"Content-Type": "application/openstack-images-v2.1-json-patch"},
            b'[{"op": "move", "path": "/name", "value": "x"}]',
            400,
        ),
        (
            "PATCH",
            "/v2/images/{id}",
            {"Content-Type": "application/openstack-images-v2.1-json-patch"},
            b'[{"op": "replace", "path": "/size", "value": 1}]',
            403,
        ),
        ("PUT", "/v2/images/{id}/file", {"Content-Type": "application/json"}, b"data", 415),
        ("GET", "/v2/images/00000000-0000-4000-8000-000000000000", {}, b"", 404),
        ("GET", "/v2/images?sort_key=bogus", {}, b"", 400),
        ("GET", "/v2/images?limit=x", {}, b"", 400),
    ],
    ids=[
        "malformed-json",
        "wrong-type",
        "read-only",
        "bad-format",
        "patch-type",
        "unknown-op",
        "patch-read-only",
        "file-type",
        "unknown-image",
        "bad-sort",
        "bad-limit",
    ],
)
def test_bad_requests(
    server: ApiServer, method: str, path: str, headers: dict[str, str], body: bytes, status: int
) -> None:
    token = server.token("alice")
    image_id = new_image(server, token)
    url = server.url + path.replace("{id}", image_id)
    resp = requests.request(method, url, data=body, headers={**headers, "X-Auth-Token": token}, timeout=30)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == status and error["message"]
    assert image_status(server, token, image_id) == "queued"


def test_no_token_is_401(server: ApiServer) -> None:
    resp = requests.get(server.url + "/v2/images", timeout=10)
    assert resp.status_code == 401
    assert resp.json()["error"]["title"] == "Unauthorized"


def test_body_shorter_than_declared(server: ApiServer) -> None:
    token = server.token("alice")
    before = data_files(server)
    image_id = new_image(server, token)
    reply = raw_upload(server, token, image_id, declared=3 << 20, send=1 << 20)
    assert b" 400 " in reply.split(b"\r\n", 1)[0] and b"Content-Length said" in reply
    assert image_status(server, token, image_id) == "queued"
    assert data_files(server) == before


def test_upload_over_the_limit_is_413(server: ApiServer) -> None:
    gc = glance_client.Client(session=server.session("alice"))
    image = gc.images.create(name="too-big", disk_format="raw", container_format="bare")
    before = data_files(server)

    class Unsized(io.RawIOBase):  # no length and no seek: the client sends it chunked
        left = LIMIT + (2 << 20)

        def readable(self) -> bool:
            return True

        def readinto(self, buf: Any) -> int:
            n = min(len(buf), self.left)
            buf[:n] = b"\x03" * n
            self.left -= n
            return n

    with pytest.raises(glance_exc.HTTPOverLimit):
        gc.images.upload(image.id, Unsized())
    assert gc.images.get(image.id).status == "queued"
    assert data_files(server) == before
    declared = raw_upload(server, server.token("alice"), image.id, declared=LIMIT + 1, send=0)
    assert b" 413 " in declared.split(b"\r\n", 1)[0]


def test_qcow2_uploaded_as_raw_is_refused(server: ApiServer) -> None:
    gc = glance_client.Client(session=server.session("alice"))
    image = gc.images.create(name="disguised", disk_format="raw", container_format="bare")
    header = b"QFI\xfb" + b"\x00" * 4092
    with pytest.raises(glance_exc.HTTPBadRequest):
        gc.images.upload(image.id, io.BytesIO(header))
    assert gc.images.get(image.id).status == "queued"


def test_property_protection_per_role(server: ApiServer) -> None:
    alice = glance_client.Client(session=server.session("alice"))
    admin = glance_client.Client(session=server.session("admin"))
    carol = glance_client.Client(session=server.session("carol"))
    with pytest.raises(glance_exc.HTTPForbidden):
        alice.images.create(name="billed", disk_format="raw", container_format="bare", x_billing_code="42")
    image = alice.images.create(name="billed", disk_format="raw", container_format="bare", x_open_note="hi")
    alice.images.upload(image.id, io.BytesIO(b"\x04" * 4096))
    admin.images.update(image.id, x_billing_code="42")
    assert alice.images.get(image.id)["x_billing_code"] == "42"
    assert "x_billing_code" not in carol.images.get(image.id)  # reader may not read it
    assert carol.images.get(image.id)["x_open_note"] == "hi"
    with pytest.raises(glance_exc.HTTPForbidden):
        alice.images.update(image.id, x_billing_code="43")
    with pytest.raises(glance_exc.HTTPForbidden):
        alice.images.update(image.id, remove_props=["x_billing_code"])
    alice.images.update(image.id, x_open_note="changed")
    # the CLI obeys the same rules: the OS user "alpha" is a member of its own project
    cli = server.env.cli(
        "image", "set", image.id, "--property", "X_BILLING_CODE=44", user="alpha", check=False
    )
    assert cli.returncode == 1 and b"X_BILLING_CODE is protected: only an admin may set it" in cli.stderr
    assert (
        json.loads(server.env.cli("-o", "json", "image", "show", image.id).stdout)["image"]["properties"][
            "x_billing_code"
        ]
        == "42"
    )


def test_body_longer_than_declared(server: ApiServer) -> None:
    """The declared bytes are the image; what follows is answered as a malformed next request."""
    token = server.token("alice")
    image_id = new_image(server, token)
    reply = raw_upload(server, token, image_id, declared=1 << 20, send=(1 << 20) + 4096)
    statuses = [line.split(b" ")[1] for line in reply.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]
    assert statuses[0] == b"204" and all(s == b"400" for s in statuses[1:])
    assert image_status(server, token, image_id) == "active"
    shown = requests.get(f"{server.url}/v2/images/{image_id}", headers={"X-Auth-Token": token}, timeout=30)
    assert shown.json()["size"] == 1 << 20
