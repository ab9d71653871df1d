"""rbd backend: Ceph RBD images; read-only resources are protected snapshots, volumes are clones of them.

Locators are ``pool/[namespace/]image[@snapshot]`` with each part %-quoted (:class:`ceph.Location`):

- an object (uploaded data) is the image ``atoll-<id>`` holding one protected snapshot ``ro``: the
  locator ``pool/atoll-<id>@ro`` names the read-only resource, and the image exists only to hold it;
- a volume is the image ``atoll-<id>`` (empty, or an ``rbd clone`` of a read-only snapshot);
- a volume snapshot is the protected snapshot ``atoll-<sid>`` inside the volume's image
  (layout INTERNAL: the service records that the snapshot requires the volume).

Removing a snapshot that RBD clones still depend on follows ``store.deferred_removal``: ``trash`` keeps it
(an object's image moves to the RBD trash; a volume snapshot is renamed ``deferred.<name>``) and later
removals in the same pool collect it once its clones are gone; ``flatten`` copies the data into the clones
now and removes it at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import IO, Any

from atoll_common import process
from atoll_common.rollback import rollback
from provider.backends.base import (
    Backend,
    Capability,
    CloneResult,
    ImportResult,
    SnapshotLayout,
    SnapshotResult,
)
from provider.backends.rbd_stream import export, layout, write_stream
from provider.config import StoreConfig
from provider.datapath.base import Attacher
from provider.datapath.ceph import Cluster, Location, bindings, translated
from provider.datapath.rbd import RbdAttacher
from provider.errors import BackendError, NotFound

LOG = logging.getLogger(__name__)

PREFIX = "atoll-"
RO_SNAP = "ro"
DEFERRED = "deferred."


class RbdBackend(Backend):
    name = "rbd"
    capabilities = (
        Capability.CLONE | Capability.SNAPSHOT | Capability.GROW | Capability.THIN | Capability.SHARED
    )
    snapshot_layout = SnapshotLayout.INTERNAL

    def attacher_class(self, disk_format: str) -> type[Attacher]:
        return RbdAttacher

    def __init__(self, config: StoreConfig, run: process.Runner = process.run) -> None:
        super().__init__(config, run)
        self.cluster = Cluster(config)

    # ---- configuration and naming ------------------------------------------------------------------
    def check(self) -> None:
        _, rbd = bindings()
        pool = self.cluster.ioctx(self.config.pool)
        ns = self.config.namespace
        if ns:
            with translated(f"{self.config.pool}/{ns}"), suppress(rbd.ImageExists):
                if not rbd.RBD().namespace_exists(pool, ns):
                    rbd.RBD().namespace_create(pool, ns)

    @property
    def home(self) -> Location:
        """Where this store creates images (any locator may name another pool or namespace)."""
        return Location(self.config.pool, self.config.namespace, "-")

    def new_locator(self, resource_id: str, mode: str) -> str:
        loc = Location(self.config.pool, self.config.namespace, PREFIX + resource_id)
        return str(loc.at(RO_SNAP) if mode == "ro" else loc)

    def snapshot_locator(self, volume: str, resource_id: str) -> str:
        return str(Location.parse(volume).at(PREFIX + resource_id))

    # ---- plumbing ----------------------------------------------------------------------------------
    def _ioctx(self, loc: Location) -> Any:
        return self.cluster.ioctx(loc.pool, loc.namespace)

    @contextmanager
    def _open(self, loc: Location, *, read_only: bool = False) -> Iterator[Any]:
        """The image of ``loc`` (at its snapshot, read-only, when it names one); native errors translated."""
        _, rbd = bindings()
        io = self._ioctx(loc)
        with translated(loc):
            image = rbd.Image(io, loc.image, snapshot=loc.snap, read_only=read_only or bool(loc.snap))
            try:
                yield image
            finally:
                image.close()

    def cli_args(self) -> list[str]:
        """How the ``rbd``, ``rados`` and ``rbd-fuse`` commands reach this store's cluster."""
        return ["-c", self.config.ceph_conf, "--id", self.config.user]

    def open_image(self, locator: str, *, read_only: bool = False) -> AbstractContextManager[Any]:
        """The open ``rbd.Image`` behind ``locator`` (the data path takes its locks through it)."""
        return self._open(Location.parse(locator), read_only=read_only)

    # ---- data in and out ---------------------------------------------------------------------------
    def import_stream(
        self,
        locator: str,
        stream: IO[bytes],
        progress: Callable[[int], None] | None = None,
        *,
        digest: bool = True,
    ) -> ImportResult:
        loc = Location.parse(locator)
        if loc.snap != RO_SNAP:
            raise BackendError(reason=f"objects are imported at an @{RO_SNAP} locator, not {locator!r}")
        _, rbd = bindings()
        image_loc = loc.at(None)
        with translated(loc):
            rbd.RBD().create(self._ioctx(loc), loc.image, 0)
        with rollback() as undo:
            undo.push(self._remove_image, image_loc)
            with self._open(image_loc) as image:
                size, sha256 = write_stream(image, stream, progress, hashed=digest)
                image.create_snap(RO_SNAP)
                image.protect_snap(RO_SNAP)
        return ImportResult(size=size, sha256=sha256)

    def export_stream(self, locator: str, disk_format: str, out: IO[bytes]) -> None:
        with self._open(Location.parse(locator), read_only=True) as image:
            export(image, out)

    def read(self, locator: str, offset: int, length: int) -> bytes:
        with self._open(Location.parse(locator), read_only=True) as image:
            length = max(0, min(length, image.size() - offset))
            return bytes(image.read(offset, length)) if length else b""

    # ---- volumes -----------------------------------------------------------------------------------
    def create_empty(self, locator: str, size: int) -> str:
        _, rbd = bindings()
        loc = Location.parse(locator)
        with translated(loc):
            rbd.RBD().create(self._ioctx(loc), loc.image, size)
        return "raw"

    def clone(self, source: str, source_format: str, locator: str, size: int) -> CloneResult:
        _, rbd = bindings()
        src, dst = Location.parse(source), Location.parse(locator)
        if src.snap is None:
            raise BackendError(reason=f"rbd clones are made of snapshots, {source!r} is an image")
        with translated(dst):
            rbd.RBD().clone(self._ioctx(src), src.image, src.snap, self._ioctx(dst), dst.image)
        with rollback() as undo:
            undo.push(self._remove_image, dst)
            with self._open(dst) as image:
                if size > image.size():
                    image.resize(size)
        return CloneResult(depends_on_source=True)

    def snapshot(self, volume: str, new_locator: str) -> SnapshotResult:
        vol, new = Location.parse(volume), Location.parse(new_locator)
        snap = new.snap or new.image
        with self._open(vol) as image:
            image.create_snap(snap)
            with rollback() as undo:
                undo.push(image.remove_snap, snap)
                image.protect_snap(snap)
        return SnapshotResult(
            snapshot_locator=str(vol.at(snap)),
            volume_locator=volume,
            snapshot_format="raw",
            layout=SnapshotLayout.INTERNAL,
        )

    def grow(self, locator: str, size: int) -> None:
        with self._open(Location.parse(locator)) as image:
            if size < image.size():
                raise BackendError(reason=f"{locator}: refusing to shrink from {image.size()} to {size}")
            image.resize(size)

    # ---- removal -----------------------------------------------------------------------------------
    def remove(self, locator: str) -> None:
        loc = Location.parse(locator)
        if loc.snap in (None, RO_SNAP):
            self._remove_image(loc.at(None))
        else:
            self._remove_snap(loc)
        self._collect_trash(loc)

    def _remove_image(self, loc: Location) -> None:
        _, rbd = bindings()
        try:
            with self._open(loc) as image:
                kept = [s["name"] for s in image.list_snaps() if not self._drop_snap(image, loc, s["name"])]
        except NotFound:
            return
        io = self._ioctx(loc)
        with translated(loc):
            if kept:
                LOG.info("%s: clones still use %s; moving the image to the rbd trash", loc.spec, kept)
                rbd.RBD().trash_move(io, loc.image, 0)
                return
            with suppress(rbd.ImageNotFound):
                rbd.RBD().remove(io, loc.image)

    def _remove_snap(self, loc: Location) -> None:
        assert loc.snap is not None
        try:
            with self._open(loc.at(None)) as image:
                names = {s["name"] for s in image.list_snaps()}
                for name in sorted(n for n in names if n.startswith(DEFERRED)):
                    self._drop_snap(image, loc, name, flatten=False)
                if loc.snap in names and not self._drop_snap(image, loc, loc.snap):
                    LOG.info("%s: clones still use it; deferring its removal", loc.spec)
                    image.rename_snap(loc.snap, DEFERRED + loc.snap)
        except NotFound:
            return

    def _drop_snap(self, image: Any, loc: Location, name: str, *, flatten: bool | None = None) -> bool:
        """Remove snapshot ``name`` of the open ``image``; False when clones still need it (trash policy)."""
        if flatten is None:
            flatten = self.config.deferred_removal == "flatten"
        image.set_snap(name)
        try:
            children = list(image.list_children2())
        finally:
            image.set_snap(None)
        if children and not flatten:
            return False
        for child in children:
            self._flatten(child, loc)
        if image.is_protected_snap(name):
            image.unprotect_snap(name)
        image.remove_snap(name)
        return True

    def _flatten(self, child: dict[str, Any], parent: Location) -> None:
        _, rbd = bindings()
        loc = Location(child["pool"], child.get("pool_namespace", ""), child["image"])
        LOG.info("flattening %s so that %s can go", loc.spec, parent.spec)
        with translated(loc):
            io = self._ioctx(loc)
            with rbd.Image(io, image_id=child["id"]) as image:
                image.flatten()

    def _collect_trash(self, loc: Location) -> None:
        """Remove images this backend moved to the rbd trash once no clone needs their snapshots."""
        _, rbd = bindings()
        io = self._ioctx(loc)
        with translated(loc):
            entries = [e for e in rbd.RBD().trash_list(io) if e["name"].startswith(PREFIX)]
            for entry in entries:
                with rbd.Image(io, image_id=entry["id"]) as image:
                    names = [s["name"] for s in image.list_snaps()]
                    if not all(self._drop_snap(image, loc, n, flatten=False) for n in names):
                        continue
                LOG.info("%s: removing %s from the rbd trash", loc.pool, entry["name"])
                rbd.RBD().trash_remove(io, entry["id"], force=True)

    # ---- inventory ---------------------------------------------------------------------------------
    def exists(self, locator: str) -> bool:
        loc = Location.parse(locator)
        try:
            with self._open(loc.at(None), read_only=True) as image:
                return loc.snap is None or loc.snap in {s["name"] for s in image.list_snaps()}
        except NotFound:
            return False

    def allocated_bytes(self, locator: str) -> int:
        with self._open(Location.parse(locator), read_only=True) as image:
            return sum(length for _, length, has_data in layout(image, image.size(), own=True) if has_data)

    def list_locators(self) -> Iterable[str]:
        _, rbd = bindings()
        home = self.home
        io = self._ioctx(home)
        found: list[str] = []
        with translated(home):
            names = sorted(n for n in rbd.RBD().list(io) if n.startswith(PREFIX))
        for name in names:
            loc = Location(home.pool, home.namespace, name)
            try:
                with self._open(loc, read_only=True) as image:
                    snaps = [s["name"] for s in image.list_snaps()]
            except NotFound:
                continue  # removed meanwhile
            if RO_SNAP in snaps:
                found.append(str(loc.at(RO_SNAP)))
                continue
            found.append(str(loc))
            found.extend(str(loc.at(s)) for s in snaps if not s.startswith(DEFERRED))
        return found
