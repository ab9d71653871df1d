"""The upload path's helpers: the hashing reader's pipeline and the write-behind of file imports."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import random
from pathlib import Path

import pytest

from provider.utils import writeback
from provider.utils.blockhash import BLOCK_SIZE, HashingReader
from provider.utils.digest import DEPTH, BackgroundDigest, file_digests
from provider.utils.writeback import LAG, STEP, WriteBehind

MiB = 1 << 20


class Chunky(io.RawIOBase):
    """A stream that answers each read with a random short count, as a socket does."""

    def __init__(self, data: bytes, seed: int) -> None:
        self.data, self.pos, self.rng = data, 0, random.Random(seed)

    def read(self, size: int = -1) -> bytes:
        n = self.rng.randint(1, size if size > 0 else len(self.data))
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hashing_reader_matches_hashlib_whatever_the_read_sizes(seed: int) -> None:
    data = random.Random(seed).randbytes(3 * BLOCK_SIZE + 12345)
    reader = HashingReader(Chunky(data, seed))
    sizes = random.Random(-seed)
    got = bytearray()
    while chunk := reader.read(sizes.choice([1, 4096, MiB, 4 * MiB])):
        got += chunk
    hashes = reader.finish()
    assert bytes(got) == data
    assert reader.md5 == hashlib.md5(data).hexdigest()
    assert reader.size == len(data)
    assert hashes == [
        hashlib.sha256(data[i : i + BLOCK_SIZE]).hexdigest() for i in range(0, len(data), BLOCK_SIZE)
    ]


def test_hashing_reader_bounds_what_the_hashes_hold() -> None:
    """Each hash lags at most DEPTH chunks: the reader never holds more than that per hash."""
    data = os.urandom(64 * MiB)
    reader = HashingReader(io.BytesIO(data))
    most = 0
    while reader.read(MiB):
        most = max(most, len(reader._pending))
    reader.finish()
    assert 0 < most <= HashingReader.DEPTH * 2
    assert reader.md5 == hashlib.md5(data).hexdigest()


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []

    def __call__(self, fd: int, start: int, length: int, flags: int) -> int:
        self.calls.append((start, length, flags))
        return 0


def test_write_behind_asks_for_every_range_in_order_and_waits_at_a_bounded_lag() -> None:
    rec = Recorder()
    behind = WriteBehind(0)
    behind._call = rec
    written = 0
    for size in [MiB] * 7 + [4 * MiB] * 100 + [3 * MiB]:
        written += size
        behind.advance(written)
        assert behind.started - behind.waited <= 2 * LAG  # dirty pages behind the writer are bounded
    starts = [(s, n) for s, n, f in rec.calls if f == writeback.SYNC_FILE_RANGE_WRITE]
    assert starts[0][0] == 0
    assert all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(starts))  # contiguous, no overlap
    assert all(n >= STEP for _, n in starts)  # one call per STEP, not one per write
    assert written - (starts[-1][0] + starts[-1][1]) < STEP
    waits = [(s, n) for s, n, f in rec.calls if f & writeback.SYNC_FILE_RANGE_WAIT_AFTER]
    assert waits and waits[0][0] == 0
    assert all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(waits))


def test_write_behind_on_a_real_file_and_where_the_call_is_refused(tmp_path: Path) -> None:
    if writeback._sync_file_range() is None:
        pytest.skip("this libc has no sync_file_range")
    with open(tmp_path / "f", "wb") as f:
        behind = WriteBehind(f.fileno())
        for i in range(1, 40):
            f.write(os.urandom(4 * MiB))
            f.flush()
            behind.advance(i * 4 * MiB)
        assert behind._call is not None and behind.waited > 0  # accepted: still in use at the end
        os.fsync(f.fileno())
    r, w = os.pipe()
    try:
        behind = WriteBehind(w)
        behind.advance(STEP)  # ESPIPE: turned off, no exception, the caller's fsync decides
        assert behind._call is None
        behind.advance(4 * STEP)
        assert behind.calls == 1
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("name", ["md5", "sha256", "sha512"])
def test_background_digest_lags_a_bounded_number_of_chunks(name: str) -> None:
    data = os.urandom(40 * MiB + 7)
    with BackgroundDigest(name) as digest:
        most = 0
        for i in range(0, len(data), MiB):
            digest.update(data[i : i + MiB])
            most = max(most, len(digest._pending))
        assert 0 < most <= DEPTH
        assert digest.hexdigest() == hashlib.new(name, data).hexdigest()
    with BackgroundDigest(None) as nothing:
        nothing.update(data)
        assert nothing.hexdigest() is None


def test_file_digests_in_a_child_and_their_errors(tmp_path: Path) -> None:
    data = os.urandom(9 * MiB + 3)
    (tmp_path / "f").write_bytes(data)
    assert file_digests(tmp_path / "f") == {"sha256": hashlib.sha256(data).hexdigest()}
    names = ("sha256", "md5", "sha512")
    assert file_digests(tmp_path / "f", names) == {n: hashlib.new(n, data).hexdigest() for n in names}
    (tmp_path / "empty").write_bytes(b"")
    assert file_digests(tmp_path / "empty", ("md5",)) == {"md5": hashlib.md5(b"").hexdigest()}
    with pytest.raises(OSError, match=r"hashing .*missing failed"):
        file_digests(tmp_path / "missing")
