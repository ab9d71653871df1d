"""Pithos-style hashmaps: the block index of read-only resources, sync uploads and dedup.

An object's hashmap is the sha256 of each of its 4 MiB blocks. A client that sends a hashmap gets the
object assembled from blocks the store already holds *for that caller* (their own objects and the
blocks they staged), or the list of hashes it must upload first. Blocks of other projects never
count: knowing a hash must not let anyone read data they could not read before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import IO, Any, cast

from sqlalchemy import Connection, delete, insert, select

from provider.backends.assemble import AssembleResult, Piece, assemble
from provider.catalog import schema as t
from provider.errors import InvalidInput, MissingBlocks
from provider.model import Resource
from provider.services.base import Service
from provider.utils.blockhash import (
    BLOCK_HASH,
    BLOCK_SIZE,
    HashingReader,
    block_count,
    block_length,
    is_block_hash,
    top_hash,
)
from provider.utils.host import new_id, now
from provider.utils.names import check_key, check_value, split_object_ref

MAX_BLOCKS = 1 << 22  # 16 TiB of 4 MiB blocks
_QUERY_BATCH = 500


@dataclass(frozen=True)
class Hashmap:
    size: int
    hashes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "block_size": BLOCK_SIZE,
            "block_hash": BLOCK_HASH,
            "bytes": self.size,
            "hash": top_hash(self.hashes),
            "hashes": self.hashes,
        }


@dataclass(frozen=True)
class _Source:
    resource_id: str
    locator: str
    idx: int
    size: int


class HashmapService(Service):
    last_assembly: AssembleResult | None = None  # what the last put() shared and copied (for tests)

    # ---- the index ---------------------------------------------------------------------------------
    def record(self, conn: Connection, res_backend: str, locator: str, hashes: list[str]) -> None:
        """Store the block hashes of a read-only backend object (idempotent)."""
        keys = (t.blocks.c.backend == res_backend, t.blocks.c.locator == locator)
        conn.execute(delete(t.blocks).where(*keys))
        if hashes:
            rows = [
                {"backend": res_backend, "locator": locator, "idx": i, "hash": h}
                for i, h in enumerate(hashes)
            ]
            conn.execute(insert(t.blocks), rows)

    def record_md5(self, conn: Connection, res_backend: str, locator: str, md5: str) -> None:
        keys = (t.digests.c.backend == res_backend, t.digests.c.locator == locator)
        conn.execute(delete(t.digests).where(*keys))
        conn.execute(insert(t.digests).values(backend=res_backend, locator=locator, md5=md5))

    def known_md5(self, res: Resource) -> str | None:
        """The md5 recorded for the resource's bytes, if any (no read)."""
        with self.catalog.read() as conn:
            found = conn.execute(
                select(t.digests.c.md5).where(
                    t.digests.c.backend == res.backend, t.digests.c.locator == res.locator
                )
            ).scalar_one_or_none()
        return None if found is None else str(found)

    def md5(self, res: Resource) -> str:
        """The md5 of a read-only resource (a Swift ETag): recorded when its bytes streamed in through
        the Object API, else computed once now (one read) and recorded."""
        found = self.known_md5(res)
        if found is not None:
            return str(found)
        sink = _Md5Sink()
        self.store.backend(res.backend).export_stream(res.locator, res.disk_format, cast(IO[bytes], sink))
        digest = sink.digest.hexdigest()
        with self.catalog.write() as conn:
            self.record_md5(conn, res.backend, res.locator, digest)
        return digest

    def _indexed(self, conn: Connection, res: Resource) -> list[str] | None:
        rows = conn.execute(
            select(t.blocks.c.hash)
            .where(t.blocks.c.backend == res.backend, t.blocks.c.locator == res.locator)
            .order_by(t.blocks.c.idx)
        ).all()
        if len(rows) != block_count(res.size):
            return None
        return [h for (h,) in rows]

    def hashmap(self, ref: str) -> Hashmap:
        """The hashmap of a read-only object the caller may read, indexing it on first use."""
        res = self.store.objects.readable(ref)
        with self.catalog.read() as conn:
            hashes = self._indexed(conn, res)
        if hashes is None:
            sink = HashingReader(md5=False)
            self.store.backend(res.backend).export_stream(res.locator, res.disk_format, cast(IO[bytes], sink))
            hashes = sink.finish()
            with self.catalog.write() as conn:
                self.record(conn, res.backend, res.locator, hashes)
        return Hashmap(size=res.size, hashes=hashes)

    # ---- staged blocks (POST ?update) -----------------------------------------------------------------
    def stage(self, stream: IO[bytes]) -> list[str]:
        """Store the blocks in ``stream`` (4 MiB each, the last may be short) for the caller's next
        hashmap; return their hashes."""
        backend = self.store.backend()
        rid = new_id()
        locator = backend.new_locator(rid, "ro")
        with self.write_then_remove() as (conn, _):
            self._insert(conn, rid, locator, op="stage")
            conn.execute(insert(t.block_stages).values(resource_id=rid, created_at=now()))
        reader = HashingReader(stream, md5=False)
        try:
            result = backend.import_stream(locator, cast(IO[bytes], reader))
            hashes = reader.finish()
            with self.catalog.write() as conn:
                self.mark_available(conn, rid, size=result.size, sha256=result.sha256)
                self.record(conn, backend.name, locator, hashes)
        except BaseException:
            self.abort_pending(rid)
            raise
        finally:
            reader.close()
        return hashes

    def _insert(self, conn: Connection, rid: str, locator: str, op: str) -> None:
        self.insert_pending(
            conn,
            rid=rid,
            size=0,
            mode="ro",
            backend=self.store.backend().name,
            locator=locator,
            disk_format="raw",
            parent=None,
            op=op,
            remove_on_abort=[locator],
        )

    # ---- objects from hashmaps (PUT ?hashmap) -------------------------------------------------------
    def put(
        self,
        path: str,
        hashes: object,
        *,
        size: int | None = None,
        meta: dict[str, str] | None = None,
        content_type: str = "application/octet-stream",
        replace: bool = False,
    ) -> Resource:
        """Create object ``container/name`` from blocks the caller's store already holds.

        :raises MissingBlocks: with the hashes to upload first (nothing is created).
        :raises InvalidInput: for a malformed hashmap or a ``size`` that does not match it.
        ``replace``: an existing object of that name is replaced once the new one is complete.
        """
        container, name = split_object_ref(path)
        meta = {check_key(k, "metadata key"): check_value(k, v) for k, v in (meta or {}).items()}
        hashes = _check_hashes(hashes)
        backend = self.store.backend()
        rid = new_id()
        locator = backend.new_locator(rid, "ro")
        with self.write_then_remove() as (conn, _):
            sources = self._sources(conn, backend.name, set(hashes))
            missing = list(dict.fromkeys(h for h in hashes if h not in sources))
            if missing:
                raise MissingBlocks(missing)
            pieces = _pieces(hashes, sources, size)
            objects = self.store.objects
            if replace:
                objects.replaceable(conn, container, name)
            else:
                objects.reserve_name(conn, container, name)
            self._insert(conn, rid, locator, op="assemble")
            # the sources stay on disk while their bytes are being shared or copied
            used = {s.resource_id for s in sources.values()}
            conn.execute(insert(t.deps), [{"resource_id": rid, "requires_id": u} for u in used])
            view_name = f".atoll-upload/{rid}" if replace else name
            objects.insert_view(conn, rid, container, view_name, content_type, meta)
        try:
            result = assemble(backend, locator, pieces)
            with self.write_then_remove() as (conn, files):
                if replace:
                    files += self.store.objects.take_name(conn, rid, container, name)
                self.mark_available(conn, rid, size=result.size)
                self.record(conn, backend.name, locator, hashes)
                files += self._release(conn, rid, used)
        except BaseException:
            self.abort_pending(rid)
            raise
        self.last_assembly = result
        return self.get(rid)

    def _release(self, conn: Connection, rid: str, used: set[str]) -> list[tuple[str, str]]:
        """The new object is independent of its sources: drop the temporary deps, and collect the
        staged blocks it consumed."""
        conn.execute(delete(t.deps).where(t.deps.c.resource_id == rid))
        staged = {
            r
            for (r,) in conn.execute(
                select(t.block_stages.c.resource_id).where(t.block_stages.c.resource_id.in_(used))
            )
        }
        files: list[tuple[str, str]] = []
        for sid in used:
            files += self.hide(conn, sid) if sid in staged else self.collect(conn, sid)
        return files

    def _sources(self, conn: Connection, backend: str, wanted: set[str]) -> dict[str, _Source]:
        """For each wanted hash, one block of a raw read-only resource on ``backend`` that the caller
        owns (their objects, images, snapshots and staged blocks), or nothing."""
        found: dict[str, _Source] = {}
        todo = sorted(wanted)
        r, b = t.resources, t.blocks
        for start in range(0, len(todo), _QUERY_BATCH):
            q = (
                select(b.c.hash, r.c.id, b.c.locator, b.c.idx, r.c.size)
                .join(r, (r.c.backend == b.c.backend) & (r.c.locator == b.c.locator))
                .where(
                    b.c.hash.in_(todo[start : start + _QUERY_BATCH]),
                    b.c.backend == backend,
                    r.c.state == "available",
                    r.c.mode == "ro",
                    r.c.disk_format == "raw",
                    r.c.owner == self.caller.name,
                )
            )
            for h, res_id, locator, idx, size in conn.execute(q):
                found.setdefault(h, _Source(res_id, locator, idx, size))
        return found


class _Md5Sink:
    def __init__(self) -> None:
        self.digest = hashlib.md5(usedforsecurity=False)

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return len(data)


def _check_hashes(hashes: object) -> list[str]:
    if not isinstance(hashes, list) or len(hashes) > MAX_BLOCKS:
        raise InvalidInput("a hashmap is a list of at most %(max)d block hashes", max=MAX_BLOCKS)
    for i, h in enumerate(hashes):
        if not is_block_hash(h):
            raise InvalidInput(
                "hashmap entry %(i)d is not a %(algo)s hex digest: %(h)r", i=i, algo=BLOCK_HASH, h=str(h)[:80]
            )
    return hashes


def _pieces(hashes: list[str], sources: dict[str, _Source], size: int | None) -> list[Piece]:
    pieces = []
    for i, h in enumerate(hashes):
        src = sources[h]
        length = block_length(src.size, src.idx)
        if length != BLOCK_SIZE and i != len(hashes) - 1:
            raise InvalidInput("block %(i)d of the hashmap is a short block: only the last may be", i=i)
        pieces.append(Piece(src.locator, src.idx * BLOCK_SIZE, length))
    total = sum(p.length for p in pieces)
    if size is not None and size != total:
        raise InvalidInput("the hashmap describes %(total)d bytes, not %(size)d", total=total, size=size)
    return pieces
