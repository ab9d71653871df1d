"""Backends, found through the ``atoll.backends`` entry-point group."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from atoll_common import process
from provider.backends.base import Backend, Capability, CloneResult, SnapshotLayout, SnapshotResult
from provider.config import StoreConfig
from provider.errors import BadConfiguration

__all__ = ["Backend", "Capability", "CloneResult", "SnapshotLayout", "SnapshotResult", "load_backend"]


_FOUND: dict[str, EntryPoint] = {}


def installed() -> dict[str, EntryPoint]:
    """The ``atoll.backends`` entry points by name, read once per process (a scan of every installed
    distribution's metadata: ~25 ms); read again when a name is missing (a plugin installed since)."""
    if not _FOUND:
        _FOUND.update((ep.name, ep) for ep in entry_points(group="atoll.backends"))
    return _FOUND


def backend_class(name: str) -> type[Backend]:
    found = installed()
    if name not in found:
        _FOUND.clear()
        found = installed()
    ep = found.get(name)
    if ep is None:
        known = sorted(found)
        raise BadConfiguration(reason=f"unknown backend {name!r} (installed: {', '.join(known) or 'none'})")
    cls = ep.load()
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BadConfiguration(reason=f"backend entry point {name!r} is not a Backend")
    return cls


def load_backend(name: str, config: StoreConfig, run: process.Runner = process.run) -> Backend:
    return backend_class(name)(config, run=run)


def pick_local(config: StoreConfig) -> str:
    """``local`` store: reflink where the store directory supports it, else qcow2."""
    from provider.backends.reflink import supports_reflink

    data = config.path / "data"
    data.mkdir(parents=True, exist_ok=True)
    return "reflink" if supports_reflink(data) else "qcow2"
