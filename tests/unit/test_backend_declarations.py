"""Backends declare what the layers above need; the services ask them instead of testing names."""

from __future__ import annotations

from pathlib import Path

import pytest

from provider.backends import Capability
from provider.backends.qcow2 import Qcow2Backend
from provider.backends.rbd import RbdBackend
from provider.backends.reflink import ReflinkBackend
from provider.config import StoreConfig
from provider.datapath.base import FileAttacher
from provider.datapath.qsd import QsdAttacher
from provider.datapath.rbd import RbdAttacher
from provider.errors import BadConfiguration, CapabilityNotSupported


def test_each_backend_names_its_attacher_raw_file_and_volume_format(tmp_path: Path) -> None:
    config = StoreConfig(path=tmp_path)
    qcow2, reflink, rbd = Qcow2Backend(config), ReflinkBackend(config), RbdBackend(config)
    assert qcow2.attacher_class("qcow2") is QsdAttacher and qcow2.attacher_class("raw") is FileAttacher
    assert reflink.attacher_class("raw") is FileAttacher and rbd.attacher_class("raw") is RbdAttacher
    assert (qcow2.volume_format, reflink.volume_format, rbd.volume_format) == ("qcow2", "raw", "raw")
    assert qcow2.raw_file("x.raw", "raw") == tmp_path / "data" / "x.raw"
    assert qcow2.raw_file("x.qcow2", "qcow2") is None
    assert reflink.raw_file("x.raw", "raw") == tmp_path / "data" / "x.raw"
    assert rbd.raw_file("atoll/atoll-x@ro", "raw") is None


def test_a_missing_capability_is_one_clear_error(tmp_path: Path) -> None:
    rbd = RbdBackend(StoreConfig(backend="rbd", path=tmp_path))
    rbd.require(Capability.CLONE, "clone read-only resources")  # declared: nothing happens
    with pytest.raises(CapabilityNotSupported) as err:
        rbd.require(Capability.LAYERED, "merge the layers of a volume")
    assert str(err.value) == "the rbd backend cannot merge the layers of a volume"
    with pytest.raises(CapabilityNotSupported, match="the reflink backend cannot list the layers"):
        ReflinkBackend(StoreConfig(path=tmp_path)).chain("x.raw")


def test_backends_are_found_by_entry_point_once_and_unknown_names_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The entry-point scan runs once per process (the verb server does it for all its children); a name
    it did not find is looked for again (a plugin installed since) before the clear error."""
    import provider.backends as backends

    scans = []
    real = backends.entry_points

    def counting(**kw: str):  # type: ignore[no-untyped-def]
        scans.append(kw)
        return real(**kw)

    monkeypatch.setattr(backends, "_FOUND", {})
    monkeypatch.setattr(backends, "entry_points", counting)
    assert backends.backend_class("qcow2") is Qcow2Backend
    assert backends.backend_class("reflink") is ReflinkBackend and backends.backend_class("rbd") is RbdBackend
    assert len(scans) == 1
    with pytest.raises(BadConfiguration, match=r"unknown backend 'nope' \(installed: .*qcow2.*reflink"):
        backends.backend_class("nope")
    assert len(scans) == 2  # looked for once more, then refused
