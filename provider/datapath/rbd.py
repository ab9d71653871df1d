"""rbd data path: QEMU's ``rbd:`` URI (userspace); krbd or rbd-nbd where the kernel has them, else rbd-fuse
and a loop device (kernelspace); every read-write attach holds the volume's RBD lock (rbd_locks)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from atoll_common import process
from atoll_common.rollback import rollback
from provider.config import StoreConfig
from provider.datapath import loop, rbd_locks
from provider.datapath.base import Attacher, Request
from provider.datapath.ceph import Location
from provider.datapath.daemon import fuse_mounted
from provider.errors import DataPathError, NotFound
from provider.model import Attachment, Resource
from provider.utils.faults import failpoint
from provider.utils.host import HOST

if TYPE_CHECKING:
    from provider.backends.rbd import RbdBackend

LOG = logging.getLogger(__name__)

DEFAULT_CEPH_CONF = "/etc/ceph/ceph.conf"
KernelPath = Literal["krbd", "nbd", "fuse"]


def qemu_uri(config: StoreConfig, loc: Location) -> str:
    """``rbd:pool/image[@snap][:id=user][:conf=FILE]``: QEMU's legacy rbd syntax. Without a namespace, a
    snapshot or a non-default ceph.conf it is exactly the form Ganeti 3.1 accepts for userspace disks."""
    uri = f"rbd:{_escape(loc.spec)}"
    if config.user:
        uri += f":id={_escape(config.user)}"
    if config.ceph_conf and config.ceph_conf != DEFAULT_CEPH_CONF:
        uri += f":conf={_escape(config.ceph_conf)}"
    return uri


def _escape(text: str) -> str:
    """QEMU splits the legacy filename on ``:``; a backslash keeps one literal."""
    return text.replace("\\", "\\\\").replace(":", "\\:")


def kernel_path() -> KernelPath:
    """How this host turns an RBD image into a block device, best first.

    :raises DataPathError: naming what is missing when there is no way at all.
    """
    if os.path.isdir("/sys/bus/rbd") and shutil.which("rbd", path=process.SAFE_PATH):
        return "krbd"
    if os.path.isdir("/sys/module/nbd") and shutil.which("rbd-nbd", path=process.SAFE_PATH):
        return "nbd"
    if os.path.exists("/dev/fuse") and shutil.which("rbd-fuse", path=process.SAFE_PATH):
        return "fuse"
    raise DataPathError(
        reason="no kernelspace path to RBD on this host: the kernel has neither the rbd nor the nbd module, "
        "and rbd-fuse (apt-get install rbd-fuse, needs /dev/fuse) is missing; attach in userspace instead"
    )


class RbdAttacher(Attacher):
    """RBD images and snapshots. Kernelspace through rbd-fuse exposes image heads only, so a snapshot is
    read there through a throw-away clone (``atoll.view-…``), removed at detach."""

    backend: RbdBackend

    # ---- attach ----------------------------------------------------------------------------------
    def attach(self, res: Resource, req: Request) -> Attachment:
        loc = Location.parse(res.locator)
        with rollback() as undo:
            if not req.readonly:
                self.lock(res, None)
                undo.push(self.unlock, res)
                failpoint("attach.after-lock")
            if req.access == "userspace":
                uri = qemu_uri(self.backend.config, loc)
                att = Attachment(res.id, req.mode, req.access, "rbd", None, uri, HOST)
            elif (how := kernel_path()) == "fuse":
                att = self._attach_fuse(res, loc, req)
            else:
                dev = self._mapped(how, loc) or self._map(how, loc, req.readonly)
                att = Attachment(res.id, req.mode, req.access, "block", dev, None, HOST)
        return att

    def _map(self, how: KernelPath, loc: Location, readonly: bool) -> str:
        argv = ["rbd", "device", "map", "-t", how, *self.backend.cli_args(), loc.spec]
        if readonly:
            argv.append("--read-only")
        try:
            return self.run(argv).stdout.strip()
        except process.ProcessError as e:
            raise DataPathError(reason=f"rbd device map {loc.spec} failed: {e.stderr.strip()}") from e

    def _mapped(self, how: KernelPath, loc: Location) -> str | None:
        """The device a crashed attach already mapped for ``loc`` (taken over)."""
        try:
            out = self.run(
                ["rbd", "device", "list", "-t", how, "--format", "json", *self.backend.cli_args()]
            ).stdout
        except process.ProcessError:
            return None
        for entry in json.loads(out or "[]"):
            same = (entry.get("pool"), entry.get("namespace", ""), entry.get("name"))
            snap = entry.get("snap") if entry.get("snap") not in ("", "-") else None
            if same == (loc.pool, loc.namespace, loc.image) and snap == loc.snap:
                return str(entry["device"])
        return None

    # ---- rbd-fuse + loop -------------------------------------------------------------------------
    def _fuse_dir(self, rid: str) -> Path:
        return self.run_dir / "rbd" / rid

    def _view(self, res: Resource, loc: Location) -> Location:
        """The image a kernelspace attach reads: the image itself, or a clone of the snapshot."""
        if loc.snap is None:
            return loc
        return Location(loc.pool, loc.namespace, f"atoll.view-{res.id}-{_safe(HOST)}")

    def _attach_fuse(self, res: Resource, loc: Location, req: Request) -> Attachment:
        view = self._view(res, loc)
        mnt = self._fuse_dir(res.id) / "mnt"
        path = mnt / view.image
        with rollback() as undo:
            if view != loc and not self.backend.exists(str(view)):
                self.backend.clone(str(loc), "raw", str(view), 0)
                undo.push(self.backend.remove, str(view))
            if not _alive(path):
                self._unmount(mnt)
                mnt.mkdir(parents=True, exist_ok=True)
                self._mount(view, mnt)
                undo.push(self._unmount, mnt)
            dev = next(iter(d for d in loop.find(path) if not loop.in_use(d)), None)
            dev = dev or loop.attach(self.run, path, readonly=req.readonly)
        return Attachment(
            res.id, req.mode, req.access, "block", dev, None, HOST, path=str(path), daemon_dir=str(mnt.parent)
        )

    def _mount(self, view: Location, mnt: Path) -> None:
        # attr_timeout=0: a live grow shows in the file's size at once (losetup -c reads it right after)
        argv = [
            "rbd-fuse",
            str(mnt),
            *self.backend.cli_args(),
            "-p",
            view.pool,
            "-r",
            view.image,
            "-o",
            "attr_timeout=0",
        ]
        if view.namespace:
            argv += ["-s", view.namespace]
        try:
            self.run(argv, timeout=60)
        except process.ProcessError as e:
            raise DataPathError(reason=f"rbd-fuse could not expose {view.spec}: {e.stderr.strip()}") from e
        if not (mnt / view.image).exists():  # rbd-fuse mounts an empty directory when the open fails
            self._unmount(mnt)
            raise DataPathError(reason=f"rbd-fuse could not open {view.spec}")

    def _unmount(self, mnt: Path) -> None:
        if fuse_mounted(mnt):
            try:
                self.run(["fusermount3", "-u", "-z", str(mnt)])
            except process.ProcessError as e:
                raise DataPathError(reason=f"cannot unmount {mnt}: {e.stderr.strip()}") from e
        with suppress(OSError):
            mnt.rmdir()

    # ---- health, detach, live grow ---------------------------------------------------------------
    def healthy(self, att: Attachment) -> bool:
        if att.device is None:
            return True  # QEMU opens the image itself: nothing on this host to go down
        if att.path is None:
            return os.path.exists(att.device)
        return _alive(Path(att.path)) and loop.backing_file(att.device) == att.path

    def detach(self, res: Resource, att: Attachment | None) -> None:
        loc = Location.parse(res.locator)
        if att is not None and att.device is not None:
            loop_dev = att.path is not None
            if loop_dev:
                loop.check_free(att.device, res.kind, res.name)
                loop.detach(self.run, att.device)
            else:
                self._unmap(att.device)
        elif att is None:
            self._detach_leftovers(res, loc)
        if att is None or att.path is not None:
            mnt = self._fuse_dir(res.id) / "mnt"
            self._unmount(mnt)
            for empty in (mnt.parent, mnt.parent.parent):
                with suppress(OSError):
                    empty.rmdir()
            view = self._view(res, loc)
            if view != loc:
                self.backend.remove(str(view))
        if res.mode == "rw":
            self.unlock(res)

    def _detach_leftovers(self, res: Resource, loc: Location) -> None:
        """What a crashed attach may have left: a loop device on the rbd-fuse file, a mapped device."""
        path = self._fuse_dir(res.id) / "mnt" / self._view(res, loc).image
        for dev in loop.find(path):
            loop.check_free(dev, res.kind, res.name)
            loop.detach(self.run, dev)
        with suppress(DataPathError):
            how = kernel_path()
            mapped = self._mapped(how, loc) if how != "fuse" else None
            if mapped:
                self._unmap(mapped)

    def _unmap(self, device: str) -> None:
        if not os.path.exists(device):
            return
        try:
            self.run(["rbd", "device", "unmap", device])
        except process.ProcessError as e:
            raise DataPathError(reason=f"cannot unmap {device}: {e.stderr.strip()}") from e

    def grow(self, res: Resource, att: Attachment, size: int) -> None:
        self.backend.grow(res.locator, size)
        if att.path is not None and att.device is not None:
            loop.refresh(self.run, att.device)  # the rbd-fuse file follows the image; the loop device not

    # ---- reinstall: the attachment serves a fresh clone -------------------------------------------
    def reclone(
        self, res: Resource, att: Attachment, new_locator: str, base_locator: str
    ) -> Attachment | None:
        """Serve ``new_locator`` (a fresh clone of ``base_locator``) in place of the volume's image: the
        write lock moves to it in the mode this node held; a userspace attachment names it in its URI; a
        kernelspace one is made again on it — the loop device on rbd-fuse keeps its number where it can,
        a mapped device is mapped anew and the old mapping dropped. None (the caller copies instead)
        while the old image is in use: its device held open, or a client (a QEMU) watching the image."""
        if att.readonly:
            return None
        busy = loop.in_use(att.device) if att.device is not None else self._watched(res.locator)
        if busy:
            LOG.warning("%s %s cannot be re-cloned in place (%s): copying instead", res.kind, res.name, busy)
            return None
        new = replace(res, locator=new_locator)
        held = rbd_locks.holders(rbd_locks.Header.of(self.backend, res.locator, self.run)).held
        with rollback() as undo:
            self.lock(new, held or "exclusive")
            undo.push(self.unlock, new)
            served = self._serve(res, new, att)
        self.unlock(res)
        return served

    def _watched(self, locator: str) -> str | None:
        with self.backend.open_image(locator, read_only=True) as image:
            watchers = list(image.watchers_list())
        return f"{len(watchers)} client(s) have the image open" if watchers else None

    def _serve(self, res: Resource, new: Resource, att: Attachment) -> Attachment:
        loc = Location.parse(new.locator)
        if att.device is None:
            return replace(att, uri=qemu_uri(self.backend.config, loc))
        if att.path is None:  # krbd or rbd-nbd: map the new image, then drop the old mapping
            how: KernelPath = "nbd" if os.path.basename(att.device).startswith("nbd") else "krbd"
            dev = self._map(how, loc, False)
            with rollback() as undo:
                undo.push(self._unmap, dev)
                self._unmap(att.device)
            return replace(att, device=dev)
        mnt = self._fuse_dir(res.id) / "mnt"
        loop.detach(self.run, att.device)
        self._unmount(mnt)
        with rollback() as undo:
            undo.push(self._expose, Location.parse(res.locator), mnt, att.device)  # the old image again
            dev = self._expose(loc, mnt, att.device)
        return replace(att, device=dev, path=str(mnt / loc.image))

    def _expose(self, loc: Location, mnt: Path, device: str) -> str:
        """Image ``loc`` through rbd-fuse at ``mnt``, its file bound to loop ``device`` where that is still
        free (else to another); return the device. Nothing is left mounted when the binding fails."""
        mnt.mkdir(parents=True, exist_ok=True)
        self._mount(loc, mnt)
        with rollback() as undo:
            undo.push(self._unmount, mnt)
            return loop.attach(self.run, mnt / loc.image, readonly=False, device=device)

    # ---- the write lock (Ganeti open/close) ------------------------------------------------------
    def lock(self, res: Resource, mode: rbd_locks.Mode | None) -> rbd_locks.Mode:
        """Hold the volume's RBD lock on this node (see rbd_locks.acquire for ``mode``)."""
        with self.backend.open_image(res.locator, read_only=True) as image:
            held = image.list_lockers()  # [] or the holders of "rbd_lock", librbd's own lock included
        if held and held["tag"] != "internal":  # an `rbd lock add` lock, not librbd's exclusive-lock
            client, ck, _addr = held["lockers"][0]
            spec = Location.parse(res.locator).spec
            raise DataPathError(
                reason=f"{spec} carries an 'rbd lock' ({client}, {ck!r}): every librbd writer would wait for "
                f"it forever; remove it first (rbd lock rm {spec} '{ck}' {client})"
            )
        return rbd_locks.acquire(
            rbd_locks.Header.of(self.backend, res.locator, self.run), res.kind, res.name, mode
        )

    def unlock(self, res: Resource) -> None:
        with suppress(NotFound):
            rbd_locks.release(rbd_locks.Header.of(self.backend, res.locator, self.run))

    def break_lock(self, res: Resource, node: str) -> None:
        """Drop the write lock the dead host ``node`` left on ``res`` (``atoll host forget``)."""
        with suppress(NotFound):
            rbd_locks.break_node(rbd_locks.Header.of(self.backend, res.locator, self.run), node)

    def open(self, res: Resource, exclusive: bool) -> None:
        """Ganeti ``open``: ready for I/O on this node, alone (exclusive) or with a migration peer."""
        if res.mode == "rw":
            self.lock(res, "exclusive" if exclusive else "shared")

    def close(self, res: Resource) -> None:
        """Ganeti ``close``: this node stops writing; the mapping stays until detach."""
        if res.mode == "rw":
            self.unlock(res)


def _alive(path: Path) -> bool:
    """The rbd-fuse file is there and its daemon answers (a dead FUSE mount fails with ENOTCONN)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", name)
