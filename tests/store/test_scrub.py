"""``atoll fsck --scrub``: snapshots get a sha256; damaged read-only data is reported with everything
derived from it and never repaired; a stopped scrub resumes from its checkpoint in the catalog."""

from __future__ import annotations

import hashlib
import io
import json
import signal
from pathlib import Path

import pytest
from sqlalchemy import update

from provider.catalog import schema as t
from provider.services import Store
from tests.conftest import StoreEnv


def _content_sha256(store: Store, ref: str) -> str:
    buf = io.BytesIO()
    store.objects.download(ref, buf)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def _lineage(env: StoreEnv, disk: Path) -> Store:
    """An image, a volume cloned from it, a snapshot of the volume and a clone of the snapshot."""
    store = env.open()
    env.cli("object", "upload", "images/base.raw", str(disk))
    env.cli("image", "register", "images/base.raw", "--name", "base")
    store.volumes.create("web", source="base")
    store.volumes.snapshot("web", "web-monday")
    store.volumes.create("restore", source="web-monday")
    return store


def _scrub(env: StoreEnv, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    proc = env.cli("-o", "json", "fsck", "--scrub", *args, check=False)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout else {}


def test_snapshots_get_the_sha256_of_their_content(env: StoreEnv, disk: Path) -> None:
    store = _lineage(env, disk)
    snap = store.images.show("web-monday")
    assert snap.sha256 == _content_sha256(store, "web-monday")
    assert snap.sha256 == store.images.show("base").sha256, "nothing was written: same bytes"
    code, report = _scrub(env)
    assert code == 0 and report["scrub"]["clean"]
    assert (report["scrub"]["checked"], report["scrub"]["recorded"]) == (2, 0)


def test_an_upload_that_defers_its_sha256_gets_it_afterwards_or_from_the_scrub(env: StoreEnv) -> None:
    """What the Object API does: the md5 and block hashes come from the bytes received, the sha256 is
    read back after the answer; if the server stops first, the scrub records it (no mismatch)."""
    store = env.open()
    data = b"atoll" * 300_000
    first = store.objects.upload("c/first", io.BytesIO(data), digest=True, defer_sha256=True)
    second = store.objects.upload("c/second", io.BytesIO(data[::-1]), digest=True, defer_sha256=True)
    assert (first.sha256, second.sha256) == (None, None)
    assert store.hashmaps.known_md5(first) == hashlib.md5(data).hexdigest()
    assert store.scrub.record_digest(first.id) == hashlib.sha256(data).hexdigest()
    assert store.objects.show("c/first").sha256 == hashlib.sha256(data).hexdigest()
    code, report = _scrub(env)
    assert code == 0 and report["scrub"]["clean"]
    assert (report["scrub"]["checked"], report["scrub"]["recorded"]) == (2, 1)
    assert store.objects.show("c/second").sha256 == hashlib.sha256(data[::-1]).hexdigest()


def test_damaged_data_is_reported_with_what_depends_on_it_and_left_alone(env: StoreEnv, disk: Path) -> None:
    store = _lineage(env, disk)
    base = store.images.show("base")
    path = store.backend(base.backend).path(base.locator)
    with open(path, "r+b") as f:  # a bit rots on the disk
        f.seek(4096)
        f.write(b"\xff")
    code, report = _scrub(env)
    assert code == 1
    assert report["clean"], "the catalog itself is consistent"
    scrub = report["scrub"]
    assert not scrub["clean"]
    damaged = {m["name"]: m for m in scrub["mismatches"]}
    assert damaged["base"]["expected"] == base.sha256
    assert damaged["base"]["affected"] == ["snapshot web-monday", "volume restore", "volume web"]
    # Never repaired: the recorded digest and the damaged bytes stay as they are.
    assert store.images.show("base").sha256 == base.sha256
    assert path.read_bytes()[4096:4097] == b"\xff"
    table = env.cli("fsck", "--scrub", check=False).stdout.decode()
    assert f"CORRUPT image base ({base.id}): sha256 " in table
    assert "  affected: snapshot web-monday, volume restore, volume web" in table
    assert "DATA DAMAGED" in table


def test_a_stopped_scrub_resumes_where_it_was(
    env: StoreEnv, disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _lineage(env, disk)
    store.volumes.snapshot("restore", "restore-tuesday")
    monkeypatch.setenv("ATOLL_FAILPOINT", "scrub.after-resource")
    killed = env.cli("fsck", "--scrub", check=False)
    assert killed.returncode == -signal.SIGKILL
    monkeypatch.delenv("ATOLL_FAILPOINT")
    resumed = env.cli("-o", "json", "fsck", "--scrub")
    assert "resuming the scrub started" in resumed.stderr.decode()
    assert "(2 resources left)" in resumed.stderr.decode()
    report = json.loads(resumed.stdout)["scrub"]
    assert (report["checked"], report["resumed"], report["clean"]) == (3, True, True)
    again = json.loads(env.cli("-o", "json", "fsck", "--scrub").stdout)["scrub"]
    assert (again["checked"], again["resumed"]) == (3, False), "a finished scrub starts over"


def test_a_missing_digest_is_computed_not_invented(env: StoreEnv, disk: Path) -> None:
    store = _lineage(env, disk)
    snap = store.images.show("web-monday")
    with store.catalog.write() as conn:
        conn.execute(update(t.resources).where(t.resources.c.id == snap.id).values(sha256=None))
    code, report = _scrub(env, "--restart")
    assert code == 0 and report["scrub"]["recorded"] == 1
    assert store.images.show("web-monday").sha256 == snap.sha256
