"""qcow2 volumes that a libvirt domain's QEMU opens itself (``atoll volume attach --domain D --direct``):
no daemon in between, the chain's lower layers read-only; live grow and snapshot go through libvirt."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from atoll_common import process
from atoll_common.rollback import rollback
from provider.backends.base import SnapshotLayout, SnapshotResult
from provider.backends.qcow2 import Qcow2Backend
from provider.datapath.base import Attacher, Request
from provider.datapath.domains import Libvirt
from provider.errors import DataPathError, InUse, NotFound
from provider.model import Attachment, Resource
from provider.utils.host import HOST

LOG = logging.getLogger(__name__)


class DirectAttacher(Attacher):
    """The attachment is the volume's top qcow2 file; which domain and disk hold it is recorded with it."""

    backend: Qcow2Backend

    def __init__(self, backend: Qcow2Backend, run_dir: Path, run: process.Runner, uri: str) -> None:
        super().__init__(backend, run_dir, run)
        self.libvirt = Libvirt(uri)

    def attach(self, res: Resource, req: Request) -> Attachment:
        path = str(self.backend.path(res.locator))
        return Attachment(res.id, req.mode, "userspace", "file", None, path, HOST, path=path, direct=True)

    def _domain(self, conn: Any, att: Attachment) -> Any | None:
        try:
            return self.libvirt.domain(conn, att.domain or "")
        except NotFound:
            return None

    def healthy(self, att: Attachment) -> bool:
        """Nothing runs on Atoll's side: healthy while the file exists (the domain may be shut off)."""
        return att.path is not None and Path(att.path).exists()

    def detach(self, res: Resource, att: Attachment | None) -> None:
        if att is None or att.domain is None:
            return
        with self.libvirt.connect() as conn:
            dom = self._domain(conn, att)
            if dom is None:
                return
            held = {**self.libvirt.config_disks(dom), **self.libvirt.live_disks(dom)}
            disk = held.get(att.target or "")
            if disk is not None and disk.source == att.uri:
                raise InUse(
                    what=res.kind,
                    ref=res.name,
                    reason=f"domain {att.domain} still has it as {att.target}: unplug it first",
                )

    def grow(self, res: Resource, att: Attachment, size: int) -> None:
        """blockResize in the running QEMU (it owns the file); offline while the domain is shut off."""
        with self.libvirt.connect() as conn:
            dom = self._domain(conn, att)
            if dom is not None and att.target in self.libvirt.live_disks(dom):
                self.libvirt.resize(dom, att.target or "", size)
                return
        self.backend.grow(res.locator, size)

    def snapshot(self, res: Resource, att: Attachment, new_locator: str) -> SnapshotResult | None:
        if att.readonly:
            return None
        self.push_overlay(res, att, res.locator, new_locator)
        self.backend.path(res.locator).chmod(0o444)
        return SnapshotResult(
            snapshot_locator=res.locator,
            volume_locator=new_locator,
            snapshot_format="qcow2",
            layout=SnapshotLayout.FREEZE_TOP,
        )

    def push_overlay(self, res: Resource, att: Attachment, top_locator: str, new_locator: str) -> None:
        """A new empty overlay over ``top_locator``: QEMU switches to it (an external disk-only snapshot)
        while the domain runs; a shut-off domain's definition is pointed at it."""
        if not self.backend.exists(new_locator):
            self.backend.create_overlay(new_locator, top_locator, res.size)
        new_path = str(self.backend.path(new_locator))
        with rollback() as undo, self.libvirt.connect() as conn:
            undo.push(self.backend.remove, new_locator)
            dom = self._domain(conn, att)
            target = att.target or ""
            if dom is not None and target in self.libvirt.live_disks(dom):
                self.libvirt.push_overlay(dom, target, new_path)
            elif dom is not None and target in self.libvirt.config_disks(dom):
                self._repoint_config(dom, target, new_path)
            undo.clear()

    def _repoint_config(self, dom: Any, target: str, new_path: str) -> None:
        old = self.libvirt.config_disks(dom)[target]
        el = ET.fromstring(old.xml)
        source = el.find("source")
        if source is None:
            raise DataPathError(reason=f"disk {target} of domain {dom.name()} has no source")
        source.set("file", new_path)
        for stale in el.findall("backingStore"):
            el.remove(stale)
        flags = self.libvirt.lv.VIR_DOMAIN_AFFECT_CONFIG
        self.libvirt.detach(dom, old.xml, flags)
        self.libvirt.plug(dom, ET.tostring(el, encoding="unicode"), flags)
