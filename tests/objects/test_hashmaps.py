"""The block index, hashmap sync and dedup, and thin copies, on every file backend (issue 12 §1)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from provider.catalog import schema as t
from provider.errors import AlreadyExists, InvalidInput, MissingBlocks, NotFound, UsageError
from provider.services import Store
from provider.utils.blockhash import BLOCK_SIZE, hash_file
from tests.conftest import StoreEnv

MiB = 1 << 20


def blocks_file(path: Path, count: int, seed: int, tail: int = 0) -> Path:
    """``count`` full blocks of distinct random-looking bytes (and ``tail`` bytes more)."""
    with open(path, "wb") as f:
        for i in range(count):
            f.write(hashlib.sha256(f"{seed}:{i}".encode()).digest() * (BLOCK_SIZE // 32))
        f.write(os.urandom(tail))
    return path


def upload(store: Store, path: str, file: Path, digest: bool = True):  # type: ignore[no-untyped-def]
    with open(file, "rb") as f:
        return store.objects.upload(path, f, digest=digest)


def content(store: Store, ref: str) -> bytes:
    out = io.BytesIO()
    store.objects.download(ref, out)
    return out.getvalue()


def count(store: Store, table: t.Table) -> int:  # type: ignore[name-defined]
    with store.catalog.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_upload_indexes_blocks_and_md5_as_bytes_pass(store: Store, tmp_path: Path) -> None:
    f = blocks_file(tmp_path / "a", 3, seed=1, tail=1000)
    obj = upload(store, "c/a", f)
    hm = store.hashmaps.hashmap("c/a").to_dict()
    assert hm["block_size"] == BLOCK_SIZE and hm["block_hash"] == "sha256"
    assert (hm["bytes"], hm["hashes"]) == hash_file(f)
    assert len(hm["hashes"]) == 4
    assert store.hashmaps.md5(obj) == hashlib.md5(f.read_bytes()).hexdigest()


def test_objects_uploaded_without_digest_are_indexed_on_first_use(store: Store, tmp_path: Path) -> None:
    f = blocks_file(tmp_path / "a", 2, seed=2)
    obj = upload(store, "c/a", f, digest=False)
    assert count(store, t.blocks) == 0 and count(store, t.digests) == 0
    assert store.hashmaps.hashmap("c/a").hashes == hash_file(f)[1]
    assert store.hashmaps.md5(obj) == hashlib.md5(f.read_bytes()).hexdigest()
    assert count(store, t.blocks) == 2 and count(store, t.digests) == 1


def test_hashmap_put_assembles_from_known_blocks(store: Store, tmp_path: Path) -> None:
    f = blocks_file(tmp_path / "a", 6, seed=3, tail=12345)
    upload(store, "c/a", f)
    hashes = hash_file(f)[1]
    order = [hashes[5], hashes[0], hashes[0], hashes[2], hashes[6]]  # reordered, repeated, short tail
    obj = store.hashmaps.put("c/b", order, size=4 * BLOCK_SIZE + 12345)
    data = f.read_bytes()
    blocks = [data[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE] for i in range(7)]
    assert content(store, "c/b") == b"".join(blocks[i] for i in (5, 0, 0, 2, 6))
    assert store.hashmaps.hashmap(obj.id).hashes == order
    done = store.hashmaps.last_assembly
    assert done is not None and done.size == obj.size
    backend = store.backend()
    if backend.name == "reflink":  # FICLONERANGE: extents shared, nothing written
        assert (done.cloned, done.copied) == (obj.size, 0)
        assert backend.allocated_bytes(obj.locator) < MiB
    else:
        assert (done.cloned, done.copied) == (0, obj.size)
    assert count(store, t.deps) == 0, "the assembled object depends on nothing"


def test_missing_blocks_are_listed_and_nothing_is_created(store: Store, tmp_path: Path) -> None:
    f = blocks_file(tmp_path / "a", 2, seed=4)
    upload(store, "c/a", f)
    known = hash_file(f)[1]
    new = hash_file(blocks_file(tmp_path / "b", 3, seed=5))[1]
    with pytest.raises(MissingBlocks) as err:
        store.hashmaps.put("c/b", [known[0], new[1], new[0], new[1], known[1]])
    assert err.value.hashes == [new[1], new[0]]
    with pytest.raises(NotFound):
        store.objects.show("c/b")
    assert count(store, t.resources) == 1


def test_staged_blocks_complete_a_sync_and_are_collected(store: Store, tmp_path: Path) -> None:
    old = blocks_file(tmp_path / "old", 8, seed=6)
    upload(store, "c/img", old)
    data = bytearray(old.read_bytes())
    data[3 * BLOCK_SIZE + 7] ^= 0xFF  # one block changed
    new = tmp_path / "new"
    new.write_bytes(data)
    hashes = hash_file(new)[1]
    with pytest.raises(MissingBlocks) as err:
        store.hashmaps.put("c/img2", hashes)
    assert err.value.hashes == [hashes[3]]
    staged = store.hashmaps.stage(io.BytesIO(bytes(data[3 * BLOCK_SIZE : 4 * BLOCK_SIZE])))
    assert staged == [hashes[3]]
    store.hashmaps.put("c/img2", hashes, size=len(data))
    assert content(store, "c/img2") == bytes(data)
    assert count(store, t.block_stages) == 0
    assert count(store, t.resources) == 2, "the staged blocks went once used"
    assert len(list(store.backend().list_locators())) == 2
    assert store.fsck.run().clean


def test_other_projects_blocks_are_never_used(env: StoreEnv, tmp_path: Path) -> None:
    alice, bob = env.open("alice"), env.open("bob")
    f = blocks_file(tmp_path / "secret", 2, seed=7)
    upload(alice, "private/secret", f)
    hashes = hash_file(f)[1]
    with pytest.raises(MissingBlocks) as err:
        bob.hashmaps.put("mine/stolen", hashes)
    assert err.value.hashes == hashes
    with pytest.raises(NotFound):
        bob.hashmaps.hashmap("private/secret")
    with pytest.raises(NotFound):
        bob.objects.show("mine/stolen")
    with pytest.raises(NotFound):
        bob.objects.copy("private/secret", "mine/copy")


@pytest.mark.parametrize(
    ("hashes", "size", "match"),
    [
        pytest.param(["zz"], None, "not a sha256 hex digest", id="malformed"),
        pytest.param("abc", None, "list of at most", id="not-a-list"),
        pytest.param(["TAIL", "H0"], None, "block 0 of the hashmap is a short block", id="short-inside"),
        pytest.param(["H0"], 5, "describes 4194304 bytes, not 5", id="size-mismatch"),
    ],
)
def test_bad_hashmaps(store: Store, tmp_path: Path, hashes: object, size: int | None, match: str) -> None:
    f = blocks_file(tmp_path / "a", 1, seed=8, tail=10)
    upload(store, "c/a", f)
    known = hash_file(f)[1]
    names = {"H0": known[0], "TAIL": known[1]}
    given = [names.get(h, h) for h in hashes] if isinstance(hashes, list) else hashes
    with pytest.raises(InvalidInput, match=match):
        store.hashmaps.put("c/b", given, size=size)  # type: ignore[arg-type]
    assert count(store, t.resources) == 1


@pytest.mark.parametrize("name", ["c/../x", "c/a\0b", "c/" + "n" * 2000, "../x", "nocontainer"])
def test_bad_object_names(store: Store, name: str) -> None:
    with pytest.raises(UsageError):
        store.hashmaps.put(name, [])
    with pytest.raises(UsageError):
        store.objects.copy("c/a", name)


def test_copy_is_a_thin_clone_that_outlives_its_source(store: Store, tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as f:  # 10 GiB, sparse, with data at both ends
        f.write(b"head" * 1024)
        f.seek((10 << 30) - 4096)
        f.write(b"tail" * 1024)
    upload(store, "c/big", big, digest=False)
    backend = store.backend()
    used = sum(backend.allocated_bytes(loc) for loc in backend.list_locators())
    files = list(backend.list_locators())
    copy = store.objects.copy("c/big", "d/copy", meta={"k": "v"})
    assert list(backend.list_locators()) == files, "no backend object was written"
    assert sum(backend.allocated_bytes(loc) for loc in backend.list_locators()) == used
    assert (copy.size, copy.parent, copy.object.meta) == (
        10 << 30,
        store.objects.show("c/big").id,
        {"k": "v"},
    )
    with pytest.raises(AlreadyExists):
        store.objects.copy("c/big", "d/copy")
    store.objects.delete("c/big")
    kept = store.objects.show("d/copy")
    assert backend.read(kept.locator, (10 << 30) - 4096, 8) == b"tailtail"
    store.objects.delete("d/copy")
    assert list(backend.list_locators()) == []
    assert count(store, t.blocks) == 0 and count(store, t.digests) == 0
    assert store.fsck.run().clean
