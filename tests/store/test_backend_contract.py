"""The backend contract every backend passes: qcow2 on any filesystem, reflink on XFS, rbd on a micro Ceph."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from pathlib import Path

import pytest

from provider.backends import Capability, SnapshotLayout
from provider.backends.base import Backend
from provider.errors import BackendError
from tests.conftest import ALL_BACKENDS, StoreEnv, backend_env, write_disk


def _raw_bytes(backend: Backend, locator: str, fmt: str) -> bytes:
    out = io.BytesIO()
    backend.export_stream(locator, fmt, out)
    return out.getvalue()


def _is_read_only(backend: Backend, locator: str) -> bool:
    """Read-only resources cannot be written: a 0444 file, or a protected RBD snapshot."""
    if backend.name != "rbd":
        return backend.path(locator).stat().st_mode & 0o222 == 0
    import rbd

    from provider.datapath.ceph import Location

    loc = Location.parse(locator)
    io_ctx = backend.cluster.ioctx(loc.pool, loc.namespace)  # type: ignore[attr-defined]
    with rbd.Image(io_ctx, loc.image) as image:
        return loc.snap is not None and bool(image.is_protected_snap(loc.snap))


def _volume_format(backend: Backend) -> str:
    return "qcow2" if backend.name == "qcow2" else "raw"


@pytest.fixture(params=ALL_BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> StoreEnv:
    """Every backend on the embedded SQLite catalog: the contract is about the backend, not the catalog."""
    return backend_env(request.param, request, tmp_path, "")


@pytest.fixture
def backend(env: StoreEnv) -> Backend:
    return env.open().backend()


def test_backend_is_the_one_configured(backend: Backend, env: StoreEnv) -> None:
    assert backend.name == env.backend
    assert backend.capabilities & Capability.CLONE
    assert backend.capabilities & Capability.SNAPSHOT


def test_import_is_sparse_immutable_and_hashed(backend: Backend, tmp_path: Path) -> None:
    src = write_disk(tmp_path / "d.raw", 64 << 20, every=32 << 20)  # two stamps, the rest zeros
    data = src.read_bytes()
    loc = backend.new_locator("11111111-0000-0000-0000-000000000001", "ro")
    with open(src, "rb") as f:
        result = backend.import_stream(loc, f)
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert _is_read_only(backend, loc), "read-only resources are not writable"
    assert backend.allocated_bytes(loc) < 8 << 20, "zero ranges stay holes"
    assert _raw_bytes(backend, loc, "raw") == data
    assert backend.read(loc, 32 << 20, 5) == b"atoll"


def test_import_streams_from_a_pipe_with_progress(backend: Backend) -> None:
    """An upload of unknown length (stdin) is written as it arrives; progress sees every byte."""
    data = os.urandom(1 << 20) + bytes(6 << 20) + b"tail" * 1000
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with open(write_fd, "wb") as w:
            for i in range(0, len(data), 1 << 20):
                w.write(data[i : i + (1 << 20)])

    writer = threading.Thread(target=feed)
    writer.start()
    seen: list[int] = []
    loc = backend.new_locator("11111111-0000-0000-0000-000000000011", "ro")
    with open(read_fd, "rb") as r:
        result = backend.import_stream(loc, r, seen.append)
    writer.join()
    assert result.size == len(data) == sum(seen)
    assert _raw_bytes(backend, loc, "raw") == data


def test_clone_copies_no_data_and_reads_the_source(backend: Backend, tmp_path: Path) -> None:
    src = write_disk(tmp_path / "d.raw", 64 << 20, every=4096)  # every block written
    loc = backend.new_locator("11111111-0000-0000-0000-000000000002", "ro")
    with open(src, "rb") as f:
        backend.import_stream(loc, f)
    data_dir = getattr(backend, "data_dir", None)
    before = os.statvfs(data_dir).f_bfree if data_dir else 0
    clone = backend.new_locator("11111111-0000-0000-0000-000000000003", "rw")
    result = backend.clone(loc, "raw", clone, 128 << 20)
    if data_dir:
        used = (before - os.statvfs(data_dir).f_bfree) * os.statvfs(data_dir).f_frsize
        assert used < 2 << 20, f"clone consumed {used} bytes of free space"
    else:
        assert backend.allocated_bytes(clone) == 0, "a clone owns no data until written"
    assert result.depends_on_source == (not backend.capabilities & Capability.REFLINK)
    content = _raw_bytes(backend, clone, _volume_format(backend))
    assert len(content) == 128 << 20
    assert content[: 64 << 20] == src.read_bytes()
    assert content[64 << 20 :].count(0) == 64 << 20


def test_snapshot_freezes_content(backend: Backend) -> None:
    vol = backend.new_locator("11111111-0000-0000-0000-000000000004", "rw")
    fmt = backend.create_empty(vol, 16 << 20)
    if backend.snapshot_layout == SnapshotLayout.FREEZE_TOP:
        new = backend.new_locator("11111111-0000-0000-0000-000000000005", "rw")
    else:
        new = backend.snapshot_locator(vol, "11111111-0000-0000-0000-000000000005")
    result = backend.snapshot(vol, new)
    assert result.layout == backend.snapshot_layout
    if result.layout == SnapshotLayout.FREEZE_TOP:
        assert (result.snapshot_locator, result.volume_locator) == (vol, new)
    else:
        assert (result.snapshot_locator, result.volume_locator) == (new, vol)
    assert _is_read_only(backend, result.snapshot_locator)
    assert backend.exists(result.snapshot_locator)
    assert fmt in ("raw", "qcow2")
    # a clone of the snapshot reads what the volume held when it was taken
    clone = backend.new_locator("11111111-0000-0000-0000-000000000007", "rw")
    backend.clone(result.snapshot_locator, result.snapshot_format, clone, 16 << 20)
    assert _raw_bytes(backend, clone, _volume_format(backend)) == bytes(16 << 20)


def test_grow_and_remove(backend: Backend) -> None:
    vol = backend.new_locator("11111111-0000-0000-0000-000000000006", "rw")
    fmt = backend.create_empty(vol, 16 << 20)
    assert vol in backend.list_locators()
    backend.grow(vol, 32 << 20)
    assert len(_raw_bytes(backend, vol, fmt)) == 32 << 20
    backend.remove(vol)
    assert not backend.exists(vol)
    backend.remove(vol)  # removing twice is fine
    assert vol not in backend.list_locators()


def test_removed_source_stays_readable_through_its_clone(backend: Backend, tmp_path: Path) -> None:
    """Removal of a read-only resource a clone still reads is deferred or made safe by the backend
    (qcow2 never gets there: the service keeps it; rbd trashes or flattens; reflink shares extents)."""
    src = write_disk(tmp_path / "d.raw", 8 << 20, every=1 << 20)
    loc = backend.new_locator("11111111-0000-0000-0000-000000000008", "ro")
    with open(src, "rb") as f:
        backend.import_stream(loc, f)
    clone = backend.new_locator("11111111-0000-0000-0000-000000000009", "rw")
    result = backend.clone(loc, "raw", clone, 8 << 20)
    if backend.name == "qcow2":
        # qcow2 declares the dependency and the catalog keeps the base (tests/store/test_services.py):
        # the declaration must be true — the clone names the base as its backing file.
        assert result.depends_on_source
        info = json.loads(backend.run(["qemu-img", "info", "--output=json", str(backend.path(clone))]).stdout)
        assert info["backing-filename"] == loc
        return
    backend.remove(loc)
    assert not backend.exists(loc)
    assert loc not in backend.list_locators()
    assert _raw_bytes(backend, clone, "raw") == src.read_bytes()
    backend.remove(clone)
    assert list(backend.list_locators()) == []


def test_bad_locator_is_refused(backend: Backend) -> None:
    bad = "../etc/passwd" if backend.name != "rbd" else "pool-only"
    with pytest.raises(BackendError):
        backend.exists(bad)
