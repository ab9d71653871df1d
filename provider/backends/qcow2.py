"""qcow2 backend: immutable raw/qcow2 bases, volumes are qcow2 overlays (works on any filesystem)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import IO, Any

from atoll_common import process
from provider.backends.base import Capability, CloneResult, SnapshotLayout, SnapshotResult
from provider.backends.files import FileBackend, copy_raw, translate_oserror
from provider.datapath.base import Attacher, FileAttacher
from provider.datapath.qsd import QsdAttacher
from provider.errors import BackendError, StorageFull


class Qcow2Backend(FileBackend):
    name = "qcow2"
    capabilities = (
        Capability.CLONE | Capability.SNAPSHOT | Capability.GROW | Capability.THIN | Capability.LAYERED
    )
    snapshot_layout = SnapshotLayout.FREEZE_TOP
    volume_format = "qcow2"

    def attacher_class(self, disk_format: str) -> type[Attacher]:
        """Raw read-only bases are plain files (a loop device); qcow2 layers need the storage daemon."""
        return QsdAttacher if disk_format == "qcow2" else FileAttacher

    def check(self) -> None:
        process.which("qemu-img", hint="apt-get install qemu-utils")
        self._ensure_dir()

    def new_locator(self, resource_id: str, mode: str) -> str:
        return f"{resource_id}.raw" if mode == "ro" else f"{resource_id}.qcow2"

    def info(self, locator: str) -> dict[str, Any]:
        """``qemu-img info`` of the whole backing chain, top first."""
        out = self.run(
            ["qemu-img", "info", "--output=json", "--backing-chain", "-U", str(self.path(locator))]
        ).stdout
        chain = json.loads(out)
        return {"chain": chain if isinstance(chain, list) else [chain]}

    def backing_of(self, locator: str) -> str | None:
        """The locator ``locator``'s image reads through (its backing file), None if it has none or is
        not a readable qcow2 (e.g. an overlay whose creation was killed half-way)."""
        try:
            top = self.info(locator)["chain"][0]
        except (process.ProcessError, ValueError, IndexError):
            return None
        backing = top.get("backing-filename")
        return os.path.basename(backing) if backing else None

    def chain_depth(self, locator: str) -> int:
        return len(self.info(locator)["chain"])

    def chain(self, locator: str) -> list[tuple[str, str]]:
        """``(locator, format)`` of every layer ``locator`` reads through, itself first."""
        layers = []
        for entry in self.info(locator)["chain"]:
            path = entry.get("filename", "")
            if os.path.dirname(os.path.abspath(path)) != os.path.abspath(self.data_dir):
                raise BackendError(reason=f"{locator} reads through {path}, outside the store")
            layers.append((os.path.basename(path), entry["format"]))
        return layers

    def _img(self, argv: list[str], **kwargs: Any) -> None:
        """Run a qemu-img command that writes into the store; a full filesystem is StorageFull."""
        try:
            self.run(argv, **kwargs)
        except process.ProcessError as e:
            if "No space left on device" in e.stderr or "Disk quota exceeded" in e.stderr:
                raise StorageFull(path=str(self.data_dir)) from e
            raise

    def create_overlay(self, locator: str, backing: str, size: int) -> None:
        """A new empty qcow2 ``locator`` over ``backing`` (named relatively), which is not opened: it
        may be held by a running daemon (that is how a live snapshot starts)."""
        self._img(
            [
                "qemu-img", "create", "-q", "-u", "-f", "qcow2", "-F", "qcow2",
                "-b", self.path(backing).name, str(self.path(locator)), str(size),
            ]
        )  # fmt: skip
        os.chmod(self.path(locator), 0o600)

    def rebase(self, locator: str, base: str, base_format: str) -> None:
        """Make the volume ``locator`` read straight from ``base``, a layer further down its chain: the
        data of the layers in between is copied into ``locator`` (safe rebase); no other file changes."""
        self._img(
            [
                "qemu-img", "rebase", "-q", "-f", "qcow2", "-F", base_format,
                "-b", self.path(base).name, str(self.path(locator)),
            ],
            timeout=None,  # copies the data of the layers in between
        )  # fmt: skip

    def create_empty(self, locator: str, size: int) -> str:
        self._ensure_dir()
        self._img(["qemu-img", "create", "-q", "-f", "qcow2", str(self.path(locator)), str(size)])
        os.chmod(self.path(locator), 0o600)
        return "qcow2"

    def clone(self, source: str, source_format: str, locator: str, size: int) -> CloneResult:
        # The backing file is named relative to the overlay: the store stays relocatable.
        self._img(
            [
                "qemu-img", "create", "-q", "-f", "qcow2", "-F", source_format,
                "-b", self.path(source).name, str(self.path(locator)), str(size),
            ]
        )  # fmt: skip
        os.chmod(self.path(locator), 0o600)
        return CloneResult(depends_on_source=True)

    def snapshot(self, volume: str, new_locator: str) -> SnapshotResult:
        top = self.path(volume)
        self._img(
            [
                "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                "-b", top.name, str(self.path(new_locator)),
            ]
        )  # fmt: skip
        os.chmod(self.path(new_locator), 0o600)
        top.chmod(0o444)
        return SnapshotResult(
            snapshot_locator=volume,
            volume_locator=new_locator,
            snapshot_format="qcow2",
            layout=SnapshotLayout.FREEZE_TOP,
        )

    def grow(self, locator: str, size: int) -> None:
        self._img(["qemu-img", "resize", "-q", "-f", "qcow2", str(self.path(locator)), str(size)])

    def export_stream(self, locator: str, disk_format: str, out: IO[bytes]) -> None:
        path = self.path(locator)
        if disk_format == "raw":
            copy_raw(path, out)
            return
        tmp_dir = self.config.path / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=tmp_dir, suffix=".raw") as tmp:
            try:
                self.run(["qemu-img", "convert", "-U", "-O", "raw", str(path), tmp.name], timeout=None)
            except process.ProcessError as e:
                if "No space left on device" in e.stderr:
                    raise StorageFull(path=str(tmp_dir)) from e
                raise BackendError(reason=f"cannot read {locator}: {e.stderr.strip()}") from e
            try:
                copy_raw(tmp_dir / tmp.name, out)
            except OSError as e:
                raise translate_oserror(e, path) from e
