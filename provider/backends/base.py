"""The Backend interface every store implements, with capability flags.

A backend stores bytes and knows nothing of objects, images or volumes: the catalog maps resources to
backend *locators* (a file name, an RBD image spec) and the services decide what a resource is.

Everything the layers above need to know about an engine is declared here and answered by the backend
(never guessed from its name or class): its ``capabilities`` (checked with :meth:`Backend.require`,
one clear error when one is missing), the disk format of a new volume (``volume_format``), the attacher
that brings a resource to a hypervisor (:meth:`Backend.attacher_class`) and the raw local file behind a
resource, if any (:meth:`Backend.raw_file`). A fourth backend is one module here plus an entry point.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar

from atoll_common import process
from provider.config import StoreConfig
from provider.errors import CapabilityNotSupported

if TYPE_CHECKING:
    from provider.datapath.base import Attacher


class Capability(enum.IntFlag):
    CLONE = enum.auto()  # thin clone of a read-only resource
    SNAPSHOT = enum.auto()  # read-only point-in-time copy of a volume, without copying data
    GROW = enum.auto()
    THIN = enum.auto()  # unwritten ranges take no space
    REFLINK = enum.auto()  # clone/snapshot share extents in the filesystem: no dependency chain
    SHARED = enum.auto()  # visible from several nodes
    LAYERED = enum.auto()  # volumes read through a chain of layers (chain/rebase/create_overlay)


class SnapshotLayout(enum.Enum):
    """How a snapshot relates physically to the volume it was taken from."""

    FREEZE_TOP = "freeze_top"  # the volume's top layer became the snapshot; the volume got a new top
    INDEPENDENT = "independent"  # the snapshot shares extents but depends on nothing (reflink)
    INTERNAL = "internal"  # the snapshot lives inside the volume's backend object (RBD snapshot)


@dataclass(frozen=True)
class CloneResult:
    depends_on_source: bool


@dataclass(frozen=True)
class SnapshotResult:
    snapshot_locator: str
    volume_locator: str
    snapshot_format: str
    layout: SnapshotLayout


@dataclass(frozen=True)
class ImportResult:
    size: int
    sha256: str | None  # None when the backend took the data without reading it (filled in later)


class Backend(abc.ABC):
    """A store of raw or qcow2 disks addressed by locator.

    Locators are chosen by the caller through :meth:`new_locator` *before* anything is written, so a
    crash can always be cleaned up: the catalog records the locator first, then the backend creates it.
    """

    name = "abstract"
    capabilities = Capability(0)
    snapshot_layout = SnapshotLayout.INDEPENDENT
    volume_format: ClassVar[str] = "raw"  # the disk format of a new volume (create_empty and clone)
    adopts_in_place: ClassVar[bool] = False  # adopt() keeps the file where it was written (a rename)

    def __init__(self, config: StoreConfig, run: process.Runner = process.run) -> None:
        self.config = config
        self.run = run

    @abc.abstractmethod
    def check(self) -> None:
        """Verify the backend can work (tools, directories, filesystem features).

        :raises BadConfiguration: with the reason when it cannot.
        """

    @abc.abstractmethod
    def new_locator(self, resource_id: str, mode: str) -> str:
        """Return the locator a new resource with ``resource_id`` will live at (nothing is created)."""

    @abc.abstractmethod
    def import_stream(
        self,
        locator: str,
        stream: IO[bytes],
        progress: Callable[[int], None] | None = None,
        *,
        digest: bool = True,
    ) -> ImportResult:
        """Write ``stream`` as a new read-only raw disk at ``locator`` (sparse, fsynced, then immutable).

        :param digest: False: do not hash the bytes (the sha256 is None; the caller records it later).
        :returns: the byte size and sha256 of what was written.
        :raises StorageFull: when the store runs out of space (the partial object is removed).
        """

    @abc.abstractmethod
    def export_stream(self, locator: str, disk_format: str, out: IO[bytes]) -> None:
        """Write the disk at ``locator`` to ``out`` as raw bytes (chains are flattened on the fly)."""

    @abc.abstractmethod
    def create_empty(self, locator: str, size: int) -> str:
        """Create an empty read-write disk of ``size`` bytes; return its disk format."""

    @abc.abstractmethod
    def clone(self, source: str, source_format: str, locator: str, size: int) -> CloneResult:
        """Create a read-write thin clone of the read-only ``source`` at ``locator``, ``size`` bytes
        (at least the source's size). No data is copied."""

    @abc.abstractmethod
    def snapshot(self, volume: str, new_locator: str) -> SnapshotResult:
        """Freeze the volume's current content as a read-only resource without copying data.

        ``new_locator`` is the one new backend object the operation may create (a new top layer for
        the volume, or the snapshot itself); the result says which locator is which.
        """

    @abc.abstractmethod
    def grow(self, locator: str, size: int) -> None:
        """Grow the read-write disk at ``locator`` to ``size`` bytes (offline)."""

    @abc.abstractmethod
    def remove(self, locator: str) -> None:
        """Physically remove the backend object; removing a missing one is not an error."""

    def give_back_space(self, locator: str) -> None:
        """Free what the read-write object at ``locator`` holds, before it is removed, where the store
        shares its filesystem with the catalog (a failed write that filled the store would otherwise
        leave no room to record the removal). Its content is lost; nothing else may use it."""
        del locator  # here (rbd): the objects live in the cluster, not beside the catalog

    @abc.abstractmethod
    def exists(self, locator: str) -> bool: ...

    @abc.abstractmethod
    def allocated_bytes(self, locator: str) -> int:
        """Bytes the backend object itself occupies (not counting what it shares)."""

    @abc.abstractmethod
    def list_locators(self) -> Iterable[str]:
        """Every backend object the store holds (fsck compares this with the catalog)."""

    def require(self, capability: Capability, operation: str) -> None:
        """:raises CapabilityNotSupported: ``the <backend> backend cannot <operation>``, when it lacks
        ``capability``."""
        if not self.capabilities & capability:
            raise CapabilityNotSupported(backend=self.name, operation=operation)

    def attacher_class(self, disk_format: str) -> type[Attacher] | None:
        """The attacher that brings a resource of ``disk_format`` to hypervisors on this host; None when
        this backend cannot attach it (the data path service then refuses with one clear error)."""
        return None

    def raw_file(self, locator: str, disk_format: str) -> Path | None:
        """The local file whose bytes are the resource's raw disk (tools may work on it directly), or
        None when there is none (a qcow2 layer, a remote object)."""
        return None

    def path(self, locator: str) -> Path:
        """The local file behind ``locator``, for backends that have one."""
        raise CapabilityNotSupported(backend=self.name, operation="give a local file path")

    # ---- layered backends (Capability.LAYERED) --------------------------------------------------------
    def chain(self, locator: str) -> list[tuple[str, str]]:
        """``(locator, format)`` of every layer ``locator`` reads through, itself first."""
        raise CapabilityNotSupported(backend=self.name, operation="list the layers of a volume")

    def rebase(self, locator: str, base: str, base_format: str) -> None:
        """Make ``locator`` read straight from ``base``, further down its chain (the layers in between
        are copied into it; no other object changes)."""
        raise CapabilityNotSupported(backend=self.name, operation="merge the layers of a volume")

    def create_overlay(self, locator: str, backing: str, size: int) -> None:
        """A new empty layer ``locator`` over ``backing``, which is not opened (a daemon may hold it)."""
        raise CapabilityNotSupported(backend=self.name, operation="add layers to a volume")

    def snapshot_locator(self, volume: str, resource_id: str) -> str:
        """The locator :meth:`snapshot` should give the snapshot ``resource_id`` of ``volume`` when the
        snapshot is a new object (layouts INDEPENDENT and INTERNAL; nothing is created)."""
        return self.new_locator(resource_id, "ro")

    def scratch_dir(self) -> Path:
        """A local directory where a raw file for :meth:`adopt` may be written (for a file backend on the
        data's own filesystem, so that adopting it is a rename)."""
        path = self.config.path / "staging"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def adopt(self, locator: str, path: Path) -> ImportResult:
        """Make the local raw file ``path`` (under :meth:`scratch_dir`) the new read-only resource at
        ``locator``; ``path`` is gone afterwards, whatever happens."""
        try:
            with open(path, "rb") as f:
                return self.import_stream(locator, f)
        finally:
            path.unlink(missing_ok=True)

    def read(self, locator: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of the backend object at ``locator`` from ``offset``, as stored (to sniff
        a header)."""
        with open(self.path(locator), "rb") as f:
            f.seek(offset)
            return f.read(length)
