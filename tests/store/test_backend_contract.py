"""The backend contract every file backend passes (qcow2 on any filesystem, reflink on XFS)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from provider.backends import Capability, SnapshotLayout
from provider.backends.base import Backend
from provider.errors import BackendError
from provider.services import Store
from tests.conftest import write_disk


def _raw_bytes(backend: Backend, locator: str, fmt: str) -> bytes:
    out = io.BytesIO()
    backend.export_stream(locator, fmt, out)
    return out.getvalue()


@pytest.fixture
def backend(store: Store) -> Backend:
    return store.backend()


def test_backend_is_the_one_configured(backend: Backend, env) -> None:  # type: ignore[no-untyped-def]
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
    path = backend.path(loc)
    assert path.stat().st_mode & 0o222 == 0, "read-only resources are not writable"
    assert backend.allocated_bytes(loc) < 8 << 20, "zero ranges stay holes"
    assert _raw_bytes(backend, loc, "raw") == data


def test_clone_copies_no_data_and_reads_the_source(backend: Backend, tmp_path: Path) -> None:
    src = write_disk(tmp_path / "d.raw", 64 << 20, every=4096)  # every block written
    loc = backend.new_locator("11111111-0000-0000-0000-000000000002", "ro")
    with open(src, "rb") as f:
        backend.import_stream(loc, f)
    before = os.statvfs(backend.data_dir).f_bfree  # type: ignore[attr-defined]
    clone = backend.new_locator("11111111-0000-0000-0000-000000000003", "rw")
    result = backend.clone(loc, "raw", clone, 128 << 20)
    used = (before - os.statvfs(backend.data_dir).f_bfree) * os.statvfs(backend.data_dir).f_frsize  # type: ignore[attr-defined]
    assert used < 2 << 20, f"clone consumed {used} bytes of free space"
    assert result.depends_on_source == (backend.name == "qcow2")
    content = _raw_bytes(backend, clone, "qcow2" if backend.name == "qcow2" else "raw")
    assert len(content) == 128 << 20
    assert content[: 64 << 20] == src.read_bytes()
    assert content[64 << 20 :].count(0) == 64 << 20


def test_snapshot_freezes_content(backend: Backend) -> None:
    vol = backend.new_locator("11111111-0000-0000-0000-000000000004", "rw")
    fmt = backend.create_empty(vol, 16 << 20)
    new = backend.new_locator("11111111-0000-0000-0000-000000000005", "rw")
    result = backend.snapshot(vol, new)
    assert result.layout == backend.snapshot_layout
    if result.layout == SnapshotLayout.FREEZE_TOP:
        assert (result.snapshot_locator, result.volume_locator) == (vol, new)
    else:
        assert (result.snapshot_locator, result.volume_locator) == (new, vol)
    assert backend.path(result.snapshot_locator).stat().st_mode & 0o222 == 0
    assert fmt in ("raw", "qcow2")


def test_grow_and_remove(backend: Backend) -> None:
    vol = backend.new_locator("11111111-0000-0000-0000-000000000006", "rw")
    fmt = backend.create_empty(vol, 16 << 20)
    backend.grow(vol, 32 << 20)
    assert len(_raw_bytes(backend, vol, fmt)) == 32 << 20
    backend.remove(vol)
    assert not backend.exists(vol)
    backend.remove(vol)  # removing twice is fine
    assert vol not in backend.list_locators()


def test_bad_locator_is_refused(backend: Backend) -> None:
    with pytest.raises(BackendError):
        backend.path("../etc/passwd")
