"""Pithos-style sync through the Object API: ``atoll object sync`` sends only the blocks that changed,
and a hashmap never reads another project's blocks."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import requests
import swiftclient

from provider.utils.blockhash import BLOCK_SIZE, hash_file
from tests.api.conftest import ApiServer
from tests.ganeti.test_fast_verbs import heavy, imported

GiB = 1 << 30
CATALOG = ("sqlalchemy", "psycopg", "provider.catalog", "provider.services", "provider.model")


def sync(api_server: ApiServer, user: str, file: Path, target: str, tmp_path: Path) -> dict[str, int]:
    pw = tmp_path / f"{user}.pw"
    pw.write_text(api_server.passwords[user])
    cmd = [sys.executable, "-m", "provider", "-o", "json", "object", "sync", str(file), target]
    cmd += [
        "--url",
        api_server.url,
        "--user",
        f"{api_server.projects[user]}:{user}",
        "--password-file",
        str(pw),
    ]
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    modules = imported(proc.stderr)
    assert "provider.cli.swift_sync" in modules  # the measurement itself works
    assert heavy(modules, CATALOG) == []  # a client: it starts without the catalog and the services
    report: dict[str, int] = json.loads(proc.stdout)
    return report


def test_sync_of_a_changed_image_sends_only_the_changed_blocks(api_server: ApiServer, tmp_path: Path) -> None:
    alice = swiftclient.Connection(
        authurl=api_server.url + "/auth/v1.0", user="alpha:alice", key=api_server.passwords["alice"]
    )
    alice.put_container("sync")
    image = tmp_path / "image.raw"
    with open(image, "wb") as f:
        for _ in range(GiB // (64 << 20)):
            f.write(os.urandom(64 << 20))
    first = sync(api_server, "alice", image, "sync/image.raw", tmp_path)
    assert (first["blocks"], first["missing"]) == (256, 256)
    assert GiB <= first["bytes_sent"] < GiB * 1.01

    with open(image, "r+b") as f:  # 1 % of the blocks change
        for block in (3, 100, 200):
            f.seek(block * BLOCK_SIZE + 123)
            f.write(os.urandom(1000))
    second = sync(api_server, "alice", image, "sync/image.raw", tmp_path)
    assert second["missing"] == 3
    assert 0.01 < second["bytes_sent"] / GiB < 0.02, second
    assert second["object_id"] != first["object_id"]

    digest = hashlib.sha256()
    headers, body = alice.get_object("sync", "image.raw", resp_chunk_size=4 << 20)
    for chunk in body:
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(image.read_bytes()).hexdigest()
    assert headers["x-atoll-id"] == second["object_id"]
    url, token = alice.get_auth()
    hashmap = requests.get(
        url + "/sync/image.raw?hashmap", headers={"X-Auth-Token": token}, timeout=60
    ).json()
    assert (hashmap["bytes"], hashmap["hashes"]) == hash_file(image)
    store = api_server.env.open("root")
    backend = store.backend()
    live = {r.locator for r in store.objects.list()}
    assert set(backend.list_locators()) == live, "the replaced object and the staged blocks are gone"


def test_hashmaps_never_reach_other_projects_blocks(api_server: ApiServer, tmp_path: Path) -> None:
    conns = {
        u: swiftclient.Connection(
            authurl=api_server.url + "/auth/v1.0",
            user=f"{api_server.projects[u]}:{u}",
            key=api_server.passwords[u],
        )
        for u in ("alice", "bob")
    }
    secret = os.urandom(BLOCK_SIZE + 100)
    conns["alice"].put_container("private")
    conns["alice"].put_object("private", "secret", secret)
    conns["bob"].put_container("mine")
    alice_url, alice_token = conns["alice"].get_auth()
    bob_url, bob_token = conns["bob"].get_auth()
    hm = requests.get(
        alice_url + "/private/secret?hashmap", headers={"X-Auth-Token": alice_token}, timeout=10
    )
    hashes = hm.json()["hashes"]
    stolen = requests.put(
        bob_url + "/mine/stolen?hashmap",
        headers={"X-Auth-Token": bob_token},
        data=json.dumps({"bytes": len(secret), "hashes": hashes}),
        timeout=10,
    )
    assert stolen.status_code == 409 and stolen.json() == hashes
    peek = requests.get(
        alice_url + "/private/secret?hashmap", headers={"X-Auth-Token": bob_token}, timeout=10
    )
    assert peek.status_code == 404
    assert (
        requests.get(bob_url + "/mine/stolen", headers={"X-Auth-Token": bob_token}, timeout=10).status_code
        == 404
    )
    bad = requests.put(
        bob_url + "/mine/x?hashmap", headers={"X-Auth-Token": bob_token}, data=b"{not json", timeout=10
    )
    assert bad.status_code == 400
