"""What only the rbd backend does: locators, the error table, check(), deferred removal by policy."""

from __future__ import annotations

import io
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from provider.backends.rbd import RbdBackend
from provider.config import StoreConfig
from provider.datapath.ceph import Location, translate
from provider.errors import BackendError, BadConfiguration, InUse, NotFound, StorageFull
from tests.conftest import StoreEnv, backend_env, write_disk

VOL = "22222222-0000-0000-0000-00000000000"


@pytest.mark.parametrize(
    ("locator", "parts"),
    [
        ("atoll/atoll-x@ro", ("atoll", "", "atoll-x", "ro")),
        ("atoll/ns1/atoll-x", ("atoll", "ns1", "atoll-x", None)),
        ("p%2Fq/n%40s/im%40g@s%2F1", ("p/q", "n@s", "im@g", "s/1")),
    ],
)
def test_locators_quote_every_part(locator: str, parts: tuple[str, str, str, str | None]) -> None:
    loc = Location.parse(locator)
    assert (loc.pool, loc.namespace, loc.image, loc.snap) == parts
    assert str(loc) == locator


@pytest.mark.parametrize("bad", ["", "pool-only", "a/b/c/d", "pool/@snap", "pool/img@", "/img"])
def test_malformed_locators_are_refused(bad: str) -> None:
    with pytest.raises(BackendError, match="bad rbd locator"):
        Location.parse(bad)


def test_native_errors_are_translated_in_one_place() -> None:
    rbd = pytest.importorskip("rbd")
    loc = Location("atoll", "", "atoll-x")
    assert isinstance(translate(rbd.ImageNotFound("gone"), loc), NotFound)
    assert isinstance(translate(rbd.ImageBusy("busy"), loc), InUse)
    assert isinstance(translate(rbd.ImageHasSnapshots("snaps"), loc), InUse)
    full = translate(rbd.NoSpace("full"), loc)
    assert isinstance(full, StorageFull)
    assert str(full) == "the store at rbd pool atoll is full"
    assert isinstance(translate(rbd.DiskQuotaExceeded("quota"), loc), StorageFull)
    assert isinstance(translate(rbd.IOError("eio"), loc), BackendError)


def test_missing_bindings_fail_check_with_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "rbd", None)  # import rbd raises ImportError
    with pytest.raises(BadConfiguration, match="python3-rbd"):
        RbdBackend(StoreConfig(backend="rbd", path=tmp_path)).check()


@pytest.fixture
def renv(request: pytest.FixtureRequest, tmp_path: Path) -> StoreEnv:
    return backend_env("rbd", request, tmp_path, "")


@pytest.fixture
def backend(renv: StoreEnv) -> RbdBackend:
    backend = renv.open().backend()
    assert isinstance(backend, RbdBackend)
    return backend


def test_check_names_what_is_wrong(renv: StoreEnv, tmp_path: Path) -> None:
    config = renv.config.store
    with pytest.raises(BadConfiguration, match="cannot connect to Ceph"):
        RbdBackend(replace(config, ceph_conf=str(tmp_path / "missing.conf"))).check()
    with pytest.raises(BadConfiguration, match="rbd pool 'no-such-pool' does not exist"):
        RbdBackend(replace(config, pool="no-such-pool")).check()


def _object(backend: RbdBackend, tmp_path: Path, n: int) -> tuple[str, bytes]:
    data = write_disk(tmp_path / f"d{n}.raw", 8 << 20, every=1 << 20).read_bytes()
    loc = backend.new_locator(f"{VOL}{n}", "ro")
    backend.import_stream(loc, io.BytesIO(data))
    return loc, data


def _read(backend: RbdBackend, locator: str) -> bytes:
    out = io.BytesIO()
    backend.export_stream(locator, "raw", out)
    return out.getvalue()


def _trash(backend: RbdBackend) -> list[str]:
    import rbd

    io_ctx = backend.cluster.ioctx(backend.config.pool, backend.config.namespace)
    return [e["name"] for e in rbd.RBD().trash_list(io_ctx)]


def _parent(backend: RbdBackend, locator: str) -> str | None:
    import rbd

    loc = Location.parse(locator)
    with rbd.Image(backend.cluster.ioctx(loc.pool, loc.namespace), loc.image) as image:
        try:
            return str(image.parent_info()[1])
        except rbd.ImageNotFound:
            return None


def test_trash_policy_keeps_an_object_until_its_last_clone_goes(backend: RbdBackend, tmp_path: Path) -> None:
    src, data = _object(backend, tmp_path, 1)
    clones = [backend.new_locator(f"{VOL}{n}", "rw") for n in (2, 3)]
    for clone in clones:
        backend.clone(src, "raw", clone, 8 << 20)
    backend.remove(src)
    assert not backend.exists(src)
    assert _trash(backend) == [Location.parse(src).image]
    assert all(_read(backend, c) == data for c in clones)
    backend.remove(clones[0])
    assert _trash(backend) == [Location.parse(src).image], "one clone still reads it"
    backend.remove(clones[1])
    assert _trash(backend) == []
    assert list(backend.list_locators()) == []


def test_trash_policy_defers_a_volume_snapshot(backend: RbdBackend) -> None:
    vol = backend.new_locator(f"{VOL}4", "rw")
    backend.create_empty(vol, 4 << 20)
    snap = backend.snapshot(vol, backend.snapshot_locator(vol, f"{VOL}5")).snapshot_locator
    clone = backend.new_locator(f"{VOL}6", "rw")
    backend.clone(snap, "raw", clone, 4 << 20)
    backend.remove(snap)
    assert not backend.exists(snap)
    assert sorted(backend.list_locators()) == sorted([vol, clone]), "a deferred snapshot is no orphan"
    backend.remove(clone)
    backend.remove(vol)  # its deferred snapshot has no clone left: both go
    assert list(backend.list_locators()) == []
    assert _trash(backend) == []


def test_flatten_policy_frees_the_source_at_once(renv: StoreEnv, tmp_path: Path) -> None:
    backend = RbdBackend(replace(renv.config.store, deferred_removal="flatten"))
    backend.check()
    src, data = _object(backend, tmp_path, 7)
    clone = backend.new_locator(f"{VOL}8", "rw")
    backend.clone(src, "raw", clone, 8 << 20)
    assert _parent(backend, clone) == Location.parse(src).image
    backend.remove(src)
    assert _trash(backend) == []
    assert _parent(backend, clone) is None, "the clone was flattened"
    assert _read(backend, clone) == data


def test_busy_and_missing_images_give_typed_errors(backend: RbdBackend) -> None:
    import rados
    import rbd

    vol = backend.new_locator(f"{VOL}9", "rw")
    with pytest.raises(NotFound):
        backend.grow(vol, 1 << 20)
    backend.create_empty(vol, 1 << 20)
    loc = Location.parse(vol)
    # another client holds the image open, as a running QEMU would
    with rados.Rados(conffile=backend.config.ceph_conf) as other, other.open_ioctx(loc.pool) as io_ctx:
        io_ctx.set_namespace(loc.namespace)
        with rbd.Image(io_ctx, loc.image), pytest.raises(InUse, match="is in use: busy"):
            backend.remove(vol)
    backend.remove(vol)
    assert not backend.exists(vol)


def test_bad_rbd_configuration_is_one_clear_line() -> None:
    from provider import config as config_mod

    with pytest.raises(BadConfiguration, match=r"deferred_removal 'later' is not one of trash, flatten"):
        config_mod.parse({"store": {"backend": "rbd", "deferred_removal": "later"}})
    with pytest.raises(BadConfiguration, match=r"unknown key.*in store: monitors"):
        config_mod.parse({"store": {"backend": "rbd", "monitors": "10.0.0.1"}})
