"""qcow2 resources through a supervised qemu-storage-daemon: a FUSE export under a loop device
(kernelspace) or an NBD export on a unix socket (userspace); live grow, snapshot and stream over QMP."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atoll_common.rollback import rollback
from provider.backends.base import SnapshotLayout, SnapshotResult
from provider.datapath import daemon, health, loop
from provider.datapath.base import Attacher, Request, flush
from provider.datapath.daemon import EXPORT_ID, DaemonDir
from provider.datapath.qmp import Qmp, QmpError
from provider.errors import DataPathError, InUse
from provider.model import Attachment, Resource
from provider.utils.faults import failpoint
from provider.utils.host import HOST

if TYPE_CHECKING:
    from provider.backends.qcow2 import Qcow2Backend

LOG = logging.getLogger(__name__)

# Tuned with bench/datapath (see bench/RESULTS.md): O_DIRECT on the image, native AIO.
CACHE_DIRECT = True
AIO = "native"
# NOTE: QEMU 7.2's FUSE export reads every request into one shared buffer and polls while a write is in
# flight, so a second request arriving then overwrites the data being written (fixed upstream in 2025,
# "fuse: Copy write buffer content before polling"). A loop device with direct I/O keeps many requests in
# flight and corrupts data (fio --verify fails at iodepth 32); without direct I/O the loop worker sends
# one synchronous request at a time. tests/datapath/test_live.py::test_qcow2_kernel_path_survives_fio_verify
LOOP_DIRECT_IO = False
SPEC_FILE = "spec.json"


def node_name() -> str:
    return "n" + uuid.uuid4().hex[:20]


def _wanted(req: Request) -> dict[str, str]:
    return {"mode": req.mode, "access": req.access}


class QsdAttacher(Attacher):
    backend: Qcow2Backend

    def _dir(self, rid: str) -> DaemonDir:
        return DaemonDir.for_resource(self.run_dir, rid)

    # ---- attach / detach -------------------------------------------------------------------------
    def attach(self, res: Resource, req: Request) -> Attachment:
        d = self._dir(res.id)
        if daemon.pid_of(d) is not None and self._spec(d) != _wanted(req):
            LOG.warning("stopping the daemon a crashed attach of %s left (it serves another way)", res.id)
            self.detach(res, None)
        if daemon.pid_of(d) is None:
            self._clear_dead(res, d)
            blockdev = self._blockdev(res, req)
            export = self._export(d, req, blockdev["node-name"])
            daemon.start(self.run, d, blockdev, export, nbd=self._nbd(req))
            (d.path / SPEC_FILE).write_text(json.dumps(_wanted(req)))
            failpoint("attach.after-daemon")
        common: dict[str, Any] = {"host": HOST, "daemon_dir": str(d.path), "socket_dir": str(d.sockets)}
        if self._nbd(req):
            uri = f"nbd:unix:{d.nbd}"
            return Attachment(res.id, req.mode, req.access, "nbd", None, uri, **common)
        with rollback() as undo:
            undo.push(daemon.stop, self.run, d)
            # NOTE: QEMU 7.2's FUSE export loses writes that a direct-I/O loop device sends it (780 of
            # 1293 random sectors read back wrong in tests/datapath/test_fuse_integrity.py): buffered.
            dev = self._adopt(d, req) or loop.attach(
                self.run, d.fuse, readonly=req.readonly, direct_io=LOOP_DIRECT_IO
            )
        return Attachment(res.id, req.mode, req.access, "block", dev, None, path=str(d.fuse), **common)

    @staticmethod
    def _nbd(req: Request) -> bool:
        return req.access == "userspace"

    def _spec(self, d: DaemonDir) -> dict[str, str] | None:
        try:
            spec: dict[str, str] = json.loads((d.path / SPEC_FILE).read_text())
        except (OSError, ValueError):
            return None
        return spec

    def _adopt(self, d: DaemonDir, req: Request) -> str | None:
        for dev in loop.find(d.fuse):
            if loop.is_readonly(dev) == req.readonly and not loop.in_use(dev):
                return dev
        return None

    def _clear_dead(self, res: Resource, d: DaemonDir) -> None:
        """After a daemon died: release the loop devices on its dead FUSE file, unmount it, clean up."""
        for dev in loop.find(d.fuse):
            reason = loop.in_use(dev)
            if reason:
                raise InUse(
                    what=res.kind,
                    ref=res.name,
                    reason=f"its daemon died and the old device is still used ({reason}): release it first",
                )
            loop.detach(self.run, dev)
        daemon.stop(self.run, d)

    def _blockdev(self, res: Resource, req: Request) -> dict[str, Any]:
        path = self.backend.path(res.locator)
        return {
            "driver": "qcow2",
            "node-name": node_name(),
            "read-only": req.readonly,
            "discard": "unmap",
            "cache": {"direct": CACHE_DIRECT, "no-flush": False},
            "file": {"driver": "file", "filename": str(path), "aio": AIO},
        }

    def _export(self, d: DaemonDir, req: Request, node: str | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"id": EXPORT_ID, "writable": not req.readonly}
        if node is not None:
            spec["node-name"] = node
        if self._nbd(req):
            # An empty export name: plain ``nbd:unix:PATH`` URIs (Ganeti <= 3.0) need no exportname.
            return {"type": "nbd", "name": "", **spec}
        # NOTE: no iothread: QEMU 7.2 aborts (bdrv_poll_co assertion) when a FUSE export in an iothread
        # writes past the old end after block_resize, and an NBD export in one on a client's connect.
        return {"type": "fuse", "mountpoint": str(d.fuse), **spec}

    def server_pid(self, att: Attachment) -> int | None:
        if att.daemon_dir is None:
            return None
        return daemon.pid_of(DaemonDir(Path(att.daemon_dir), Path(att.socket_dir or att.daemon_dir)))

    def healthy(self, att: Attachment) -> bool:
        return health.qsd_ok(self.run_dir, att.resource_id, att.device)

    def detach(self, res: Resource, att: Attachment | None) -> None:
        d = self._dir(res.id)
        devices = [att.device] if att is not None and att.device else loop.find(d.fuse)
        for dev in devices:
            loop.check_free(dev, res.kind, res.name)
        if daemon.pid_of(d) is not None and (att is None or att.kind == "nbd"):
            with Qmp(d.qmp) as q:
                self._drop_nbd_export(res, q)
        for dev in devices:
            loop.detach(self.run, dev)
        failpoint("detach.after-loop")
        daemon.stop(self.run, d)

    def _drop_nbd_export(self, res: Resource, q: Qmp) -> None:
        """Remove the NBD export unless a client still uses it (QEMU's "safe" mode refuses then)."""
        exports = {e["id"]: e for e in q.execute("query-block-exports")}
        if exports.get(EXPORT_ID, {}).get("type") != "nbd":
            return
        try:
            q.execute("block-export-del", id=EXPORT_ID, mode="safe")
        except QmpError as e:
            raise InUse(what=res.kind, ref=res.name, reason=f"an NBD client is connected ({e})") from e
        _wait_export_gone(q)

    # ---- live operations -------------------------------------------------------------------------
    def grow(self, res: Resource, att: Attachment, size: int) -> None:
        if att.readonly:
            raise InUse(what=res.kind, ref=res.name, reason="it is attached read-only: detach it to grow it")
        d = self._dir(res.id)
        with Qmp(d.qmp) as q:
            node = export_node(q)
            if att.kind != "nbd":
                q.execute("block_resize", **{"node-name": node, "size": size})
            else:
                # NOTE: QEMU 7.2's NBD export does not share the resize permission, and NBD cannot tell a
                # connected client a new size: the export is re-created, only while nobody uses it.
                self._drop_nbd_export(res, q)
                q.execute("block_resize", **{"node-name": node, "size": size})
                q.execute("block-export-add", **self._export(d, Request(att.mode, att.access), node))
        if att.device and att.path:
            _wait_size(att.path, size)
            loop.refresh(self.run, att.device)

    def snapshot(self, res: Resource, att: Attachment, new_locator: str) -> SnapshotResult | None:
        if att.readonly:
            return None  # the daemon never writes: the backend may freeze the top file itself
        self.push_overlay(res, att, res.locator, new_locator)
        self.backend.path(res.locator).chmod(0o444)
        return SnapshotResult(
            snapshot_locator=res.locator,
            volume_locator=new_locator,
            snapshot_format="qcow2",
            layout=SnapshotLayout.FREEZE_TOP,
        )

    def push_overlay(self, res: Resource, att: Attachment, top_locator: str, new_locator: str) -> None:
        """Put a new empty overlay ``new_locator`` on top of the served ``top_locator`` (which freezes):
        the export follows it, and in-flight requests drain first, so it happens at one point in time."""
        top_path = self.backend.path(top_locator)
        if not self.backend.exists(new_locator):
            self.backend.create_overlay(new_locator, top_locator, res.size)
        with rollback() as undo:
            undo.push(self.backend.remove, new_locator)
            with Qmp(self._dir(res.id).qmp) as q:
                top = export_node(q)
                if not _same_file(node_file(q, top), top_path):
                    raise DataPathError(reason=f"the daemon of {res.name} does not serve {top_locator}")
                new = node_name()
                q.execute("blockdev-add", **self._overlay(new, new_locator))
                undo.push(_blockdev_del, q, new)
                q.execute("blockdev-snapshot", node=top, overlay=new)
                undo.clear()

    def reclone(
        self, res: Resource, att: Attachment, new_locator: str, base_locator: str
    ) -> Attachment | None:
        """The export serves ``new_locator`` (an empty overlay of ``base_locator``) from now on: the new
        node goes on top of whatever is served (in-flight requests drain first), is reopened onto the
        base, and the old layers are closed. What the host cached of the old content is written back
        before and dropped after, so the attached device reads the fresh clone at once."""
        if att.readonly:
            return None
        d = self._dir(res.id)
        flush(att)
        with Qmp(d.qmp) as q:
            old = export_node(q)
            try:
                base = node_for_file(q, self.backend.path(base_locator))
            except DataPathError as e:
                LOG.warning("%s cannot be re-cloned live (%s): copying instead", res.name, e)
                return None
            new = node_name()
            spec = self._overlay(new, new_locator)
            spec["file"] = {**spec["file"], "node-name": new + "-file"}
            q.execute("blockdev-add", **spec)
            try:
                q.execute("blockdev-snapshot", node=old, overlay=new)
            except QmpError:
                _blockdev_del(q, new)
                raise
            # NOTE: from here the daemon has the new file open: a failure leaves it for fsck.
            q.execute("blockdev-reopen", options=[{**spec, "file": new + "-file", "backing": base}])
            _close_unused(q, keep={new, new + "-file"})
        if att.device is not None:  # kernelspace: a loop device on the FUSE file
            for dev in loop.find(d.fuse):
                loop.drop_cache(dev)
            _drop_file_cache(d.fuse)
        return att

    def _overlay(self, node: str, locator: str) -> dict[str, Any]:
        return {
            "driver": "qcow2",
            "node-name": node,
            "discard": "unmap",
            "cache": {"direct": CACHE_DIRECT, "no-flush": False},
            "file": {"driver": "file", "filename": str(self.backend.path(locator)), "aio": AIO},
            "backing": None,
        }

    def stream(self, res: Resource, att: Attachment, layer: str, base_locator: str) -> bool:
        """Copy into ``layer`` (a private layer under the served top, never the top itself: a writable
        FUSE export holds the resize permission a job on it would need) the data of the layers between
        it and ``base_locator``, which it then reads from directly."""
        if att.readonly:
            return False
        with Qmp(self._dir(res.id).qmp) as q:
            node = node_for_file(q, self.backend.path(layer))
            base = node_for_file(q, self.backend.path(base_locator))
            job = "stream-" + uuid.uuid4().hex[:8]
            q.execute(
                "block-stream",
                **{"job-id": job, "device": node, "base-node": base, "backing-file": base_locator},
                **{"auto-dismiss": False},
            )
            q.wait_job(job)
        return True


def _blockdev_del(q: Qmp, node: str) -> None:
    q.execute("blockdev-del", **{"node-name": node})


def _close_unused(q: Qmp, keep: set[str]) -> None:
    """Close every node added by name, outside ``keep``, that nothing uses any more; a layer closes
    before the layer under it, so repeat until a round closes nothing."""
    closed = True
    while closed:
        closed = False
        for n in _nodes(q):
            if n["node-name"].startswith("#") or n["node-name"] in keep:
                continue  # QEMU's own child nodes go with their parents
            try:
                _blockdev_del(q, n["node-name"])
                closed = True
            except QmpError:
                pass  # still in use


def _drop_file_cache(path: Path) -> None:
    """Forget the kernel's pages of the FUSE file (the loop device reads through them)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def export_node(q: Qmp) -> str:
    """The node the export serves: the volume's current top (it follows live snapshots)."""
    for exp in q.execute("query-block-exports"):
        if exp["id"] == EXPORT_ID:
            node: str = exp["node-name"]
            return node
    raise DataPathError(reason="the daemon has no export")


def _nodes(q: Qmp) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = q.execute("query-named-block-nodes", flat=True)
    return nodes


def _filename(name: str) -> str:
    """A node's file name; QEMU gives ``json:{…}`` for a node whose backing was set at run time."""
    if not name.startswith("json:"):
        return name
    spec = json.loads(name[5:]).get("file", {})
    return str(spec.get("filename", "")) if isinstance(spec, dict) else str(spec)


def node_file(q: Qmp, node: str) -> str:
    for n in _nodes(q):
        if n["node-name"] == node:
            return _filename(n["file"])
    raise DataPathError(reason=f"the daemon has no node {node}")


def node_for_file(q: Qmp, path: os.PathLike[str]) -> str:
    """The format node (not the protocol node) that opened ``path``."""
    for n in _nodes(q):
        if n["drv"] != "file" and _same_file(_filename(n["file"]), path):
            name: str = n["node-name"]
            return name
    raise DataPathError(reason=f"the daemon does not hold {path}")


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _wait_size(path: str, size: int, timeout: float = 10.0) -> None:
    """Wait until the kernel sees the FUSE file at ``size``: it caches attributes for a second (QEMU 7.2
    sends no invalidation), and ``losetup -c`` reads the cached size."""
    deadline = time.monotonic() + timeout
    while os.stat(path).st_size < size:
        if time.monotonic() > deadline:
            raise DataPathError(reason=f"{path} still shows {os.stat(path).st_size} bytes after the resize")
        time.sleep(0.1)


def _wait_export_gone(q: Qmp, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while any(e["id"] == EXPORT_ID for e in q.execute("query-block-exports")):
        if time.monotonic() > deadline:
            raise DataPathError(reason="the NBD export does not go away")
        time.sleep(0.02)
