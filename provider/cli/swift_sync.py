"""The client side of Pithos-style sync (``atoll object sync``): send only the blocks the server lacks.

1. Hash the file's 4 MiB blocks (sha256, in parallel threads, each block read once).
2. ``PUT …/<container>/<name>?hashmap``: done if the server already holds every block for us;
   otherwise ``409`` lists the missing hashes.
3. ``POST …/<container>?update`` with just those blocks (read again from the file by offset, in
   batches), then repeat the ``PUT``.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from provider.errors import AtollError, AuthenticationFailed, InvalidInput
from provider.utils.blockhash import BLOCK_SIZE, block_length, hash_file

BATCH_BLOCKS = 32  # 128 MiB per block upload request
SEND_CHUNK = 1 << 20


class SyncFailed(AtollError):
    message = "sync failed: %(reason)s"


@dataclass
class SyncReport:
    size: int
    blocks: int
    missing: int
    bytes_sent: int  # request bodies: hashmaps and blocks
    object_id: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SwiftClient:
    """A minimal Swift v1 client on one keep-alive connection (only what sync needs)."""

    def __init__(self, url: str, user: str, key: str) -> None:
        self.base = urllib.parse.urlsplit(url.rstrip("/"))
        self.conn = self._connect(self.base)
        status, headers, _ = self.request(
            "GET", self.base.path + "/auth/v1.0", {"X-Auth-User": user, "X-Auth-Key": key}
        )
        if status != 200:
            raise AuthenticationFailed(reason=f"{url}/auth/v1.0 answered {status}")
        self.token = headers["x-auth-token"]
        storage = urllib.parse.urlsplit(headers["x-storage-url"])
        self.storage_path = storage.path
        self.sent = 0

    @staticmethod
    def _connect(url: urllib.parse.SplitResult) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        return cls(url.hostname or "localhost", url.port, timeout=600)

    def request(
        self, method: str, path: str, headers: dict[str, str], body: Any = None, length: int | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        self.conn.putrequest(method, _quote_path(path))
        for k, v in headers.items():
            self.conn.putheader(k, v)
        if body is not None:
            self.conn.putheader("Content-Length", str(length if length is not None else len(body)))
        self.conn.endheaders()
        if isinstance(body, bytes):
            self.conn.send(body)
            self.sent += len(body)
        elif body is not None:
            for chunk in body:
                self.conn.send(chunk)
                self.sent += len(chunk)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def call(
        self, method: str, path: str, body: Any = None, length: int | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        return self.request(method, self.storage_path + path, {"X-Auth-Token": self.token}, body, length)


def _quote_path(path: str) -> str:
    base, sep, query = path.partition("?")
    return urllib.parse.quote(base) + sep + query


def sync(
    client: SwiftClient, file: str, target: str, progress: Callable[[int], None] | None = None
) -> SyncReport:
    """Make object ``target`` (``container/name``) hold the bytes of ``file``, sending only what the
    server lacks; returns what was sent."""
    container, sep, name = target.partition("/")
    if not sep or not container or not name:
        raise InvalidInput("invalid object path %(ref)r: expected CONTAINER/NAME", ref=target)
    size, hashes = hash_file(file)
    hashmap = json.dumps({"bytes": size, "hashes": hashes}).encode()
    status, headers, body = client.call("PUT", f"/{container}/{name}?hashmap", hashmap)
    missing: list[str] = []
    if status == 409:
        missing = json.loads(body)
        _send_blocks(client, container, file, size, hashes, missing, progress)
        status, headers, body = client.call("PUT", f"/{container}/{name}?hashmap", hashmap)
    if status != 201:
        raise SyncFailed(reason=f"PUT ?hashmap answered {status}: {body[:300].decode(errors='replace')}")
    return SyncReport(size, len(hashes), len(missing), client.sent, headers.get("x-atoll-id", ""))


def _send_blocks(
    client: SwiftClient,
    container: str,
    file: str,
    size: int,
    hashes: list[str],
    missing: list[str],
    progress: Callable[[int], None] | None,
) -> None:
    where: dict[str, int] = {}
    for i, h in enumerate(hashes):
        where.setdefault(h, i)
    unknown = [h for h in missing if h not in where]
    if unknown:
        raise SyncFailed(reason=f"the server asked for {len(unknown)} blocks the file does not have")
    indexes = [where[h] for h in missing]
    fd = os.open(file, os.O_RDONLY)
    try:
        for start in range(0, len(indexes), BATCH_BLOCKS):
            batch = indexes[start : start + BATCH_BLOCKS]
            length = sum(block_length(size, i) for i in batch)
            status, _, body = client.call(
                "POST", f"/{container}?update", _blocks(fd, batch, progress), length
            )
            if status not in (200, 201, 202) or json.loads(body) != [hashes[i] for i in batch]:
                raise SyncFailed(
                    reason=f"block upload answered {status}: {body[:300].decode(errors='replace')}"
                )
    finally:
        os.close(fd)


def _blocks(fd: int, indexes: list[int], progress: Callable[[int], None] | None) -> Any:
    for i in indexes:
        data = os.pread(fd, BLOCK_SIZE, i * BLOCK_SIZE)
        for off in range(0, len(data), SEND_CHUNK):
            yield data[off : off + SEND_CHUNK]
        if progress:
            progress(len(data))
