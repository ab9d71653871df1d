"""Raw-HTTP helpers for the API tests: images made with requests, uploads over a bare socket."""

from __future__ import annotations

import socket
import time

import requests

from tests.api.conftest import ApiServer


def new_image(server: ApiServer, token: str, **fields: object) -> str:
    body = {"name": None, "disk_format": "raw", "container_format": "bare", **fields}
    resp = requests.post(server.url + "/v2/images", json=body, headers={"X-Auth-Token": token}, timeout=30)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def recorded_sha256(api_server: ApiServer, rid: str) -> str | None:
    """The sha256 the server records once an upload has been answered (read back from the store)."""
    deadline = time.monotonic() + 60
    while True:
        found = api_server.env.open("root").resources.get(rid).sha256
        if found is not None or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def data_files(server: ApiServer) -> list[str]:
    data = server.env.config.store.path / "data"
    return sorted(p.name for p in data.iterdir()) if data.exists() else []


def image_status(server: ApiServer, token: str, image_id: str) -> str:
    resp = requests.get(f"{server.url}/v2/images/{image_id}", headers={"X-Auth-Token": token}, timeout=30)
    return str(resp.json()["status"])


def raw_upload(server: ApiServer, token: str, image_id: str, declared: int, send: int) -> bytes:
    """PUT ``send`` bytes while declaring ``declared``, then close the connection."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"PUT /v2/images/{image_id}/file HTTP/1.1\r\nHost: {host}\r\nX-Auth-Token: {token}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n"
        )
        sock.sendall(head.encode())
        chunk = b"\x01" * (1 << 20)
        sent = 0
        while sent < send:
            n = min(len(chunk), send - sent)
            sock.sendall(chunk[:n])
            sent += n
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while part := sock.recv(65536):
            reply += part
        return reply


def wait_status(server: ApiServer, token: str, image_id: str, want: str) -> None:
    deadline = time.monotonic() + 30
    while image_status(server, token, image_id) != want:
        assert time.monotonic() < deadline, f"image {image_id} never became {want}"
        time.sleep(0.1)
