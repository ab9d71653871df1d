"""libvirt domains through libvirt-python: plug and unplug ``<disk>`` elements, the cephx secret rbd disks
name, and the live block operations (resize, external disk-only snapshot) of a disk QEMU opens itself."""

from __future__ import annotations

import base64
import contextlib
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from provider.errors import BadConfiguration, DataPathError, InUse, NotFound

LOG = logging.getLogger(__name__)
POLL = 0.2  # seconds between looks at the live definition while the guest releases a disk


def bindings() -> ModuleType:
    """libvirt-python (Debian's python3-libvirt, seen by the venv through its system site packages)."""
    try:
        import libvirt
    except ImportError as e:
        raise BadConfiguration(reason="libvirt-python is missing (apt-get install python3-libvirt)") from e
    # NOTE: without a handler libvirt prints every error it reports to stderr, even handled ones.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


@dataclass(frozen=True)
class Disk:
    """A ``<disk>`` of a domain's definition: its target and what it opens."""

    target: str
    source: str | None
    xml: str


def disks(xml: str) -> dict[str, Disk]:
    """The disks of a domain definition by target name (``vda``…)."""
    found = {}
    for el in ET.fromstring(xml).iterfind("./devices/disk"):
        target = el.find("target")
        if target is None:
            continue
        src = el.find("source")
        source = None
        if src is not None:
            source = src.get("file") or src.get("dev") or src.get("name") or _socket(src)
        found[target.get("dev", "")] = Disk(
            target.get("dev", ""), source, ET.tostring(el, encoding="unicode")
        )
    return found


def _socket(src: ET.Element) -> str | None:
    host = src.find("host")
    return host.get("socket") if host is not None else None


def free_target(used: set[str], prefix: str = "vd") -> str:
    """The first ``vdX`` name (``vdb`` on: ``vda`` is by custom the boot disk) no disk uses."""
    for letter in "bcdefghijklmnopqrstuvwxyz":
        if prefix + letter not in used:
            return prefix + letter
    raise InUse(what="domain", ref="", reason=f"every {prefix}b…{prefix}z target is taken")


class Libvirt:
    """One connection's worth of domain operations; libvirt errors become Atoll errors here."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.lv = bindings()

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        try:
            conn = self.lv.open(self.uri)
        except self.lv.libvirtError as e:
            raise DataPathError(reason=f"cannot connect to libvirt at {self.uri}: {e}") from e
        try:
            yield conn
        finally:
            conn.close()

    def domain(self, conn: Any, name: str) -> Any:
        try:
            return conn.lookupByName(name)
        except self.lv.libvirtError as e:
            if e.get_error_code() == self.lv.VIR_ERR_NO_DOMAIN:
                raise NotFound(what="libvirt domain", ref=name) from e
            raise self._error(e, f"look up domain {name}") from e

    def _error(self, e: Exception, doing: str) -> DataPathError:
        return DataPathError(reason=f"libvirt cannot {doing}: {e}")

    def live_disks(self, dom: Any) -> dict[str, Disk]:
        """The disks QEMU has now (the running definition), or none when the domain is shut off."""
        return disks(dom.XMLDesc(0)) if dom.isActive() else {}

    def config_disks(self, dom: Any) -> dict[str, Disk]:
        if not dom.isPersistent():
            return {}
        return disks(dom.XMLDesc(self.lv.VIR_DOMAIN_XML_INACTIVE))

    def flags(self, dom: Any, config: bool) -> int:
        """Hot-plug when the domain runs, and also (``config``) into its persistent definition."""
        flags = self.lv.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0
        if config:
            flags |= self.lv.VIR_DOMAIN_AFFECT_CONFIG
        if not flags:
            raise InUse(
                what="libvirt domain",
                ref=dom.name(),
                reason="it is shut off: start it, or use --config to add the disk to its definition",
            )
        return flags

    def plug(self, dom: Any, xml: str, flags: int) -> None:
        try:
            dom.attachDeviceFlags(xml, flags)
        except self.lv.libvirtError as e:
            raise self._error(e, f"plug the disk into domain {dom.name()}") from e

    def unplug(self, dom: Any, target: str, timeout: float) -> None:
        """Unplug disk ``target`` from the running domain and its definition; wait until the guest has let
        it go (it answers the hot-unplug request), at most ``timeout`` seconds.

        :raises InUse: the guest did not release the disk in time (it stays plugged and keeps working).
        """
        live = self.live_disks(dom).get(target)
        persistent = self.config_disks(dom).get(target)
        if persistent is not None:
            self.detach(dom, persistent.xml, self.lv.VIR_DOMAIN_AFFECT_CONFIG)
        if live is None:
            return
        self.detach(dom, live.xml, self.lv.VIR_DOMAIN_AFFECT_LIVE)
        deadline = time.monotonic() + timeout
        while target in self.live_disks(dom):
            if time.monotonic() > deadline:
                raise InUse(
                    what="disk",
                    ref=target,
                    reason=f"the guest of domain {dom.name()} did not release it within {timeout:g} s "
                    "(it may still use it: unmount it in the guest, or give --timeout); it stays plugged",
                )
            time.sleep(POLL)

    def detach(self, dom: Any, xml: str, flags: int) -> None:
        """Ask libvirt to remove the disk ``xml`` (live: the guest is asked; it may take a while)."""
        try:
            dom.detachDeviceFlags(xml, flags)
        except self.lv.libvirtError as e:
            if "already in the process of unplug" in str(e):
                return  # QEMU still waits for the guest to answer the request of an earlier detach
            raise self._error(e, f"unplug the disk from domain {dom.name()}") from e

    def resize(self, dom: Any, target: str, size: int) -> None:
        """Grow disk ``target`` in the running QEMU (the guest sees the new capacity at once)."""
        try:
            dom.blockResize(target, size, self.lv.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
        except self.lv.libvirtError as e:
            raise self._error(e, f"resize disk {target} of domain {dom.name()}") from e

    def push_overlay(self, dom: Any, target: str, overlay: str) -> None:
        """Put the pre-made qcow2 ``overlay`` (its backing file: the disk's current top) on top of disk
        ``target``, live, as an external disk-only snapshot without libvirt metadata: QEMU writes into
        the overlay from then on and the old top stays as it was at that instant."""
        lv = self.lv
        xml = (
            "<domainsnapshot><disks>"
            f"<disk name={_attr(target)} snapshot='external' type='file'>"
            f"<driver type='qcow2'/><source file={_attr(overlay)}/></disk>"
            "</disks></domainsnapshot>"
        )
        others = [d for d in self.live_disks(dom) if d != target]
        if others:
            exclude = "".join(f"<disk name={_attr(d)} snapshot='no'/>" for d in others)
            xml = xml.replace("</disks>", exclude + "</disks>")
        flags = (
            lv.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
            | lv.VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT
            | lv.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
            | lv.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
        )
        try:
            dom.snapshotCreateXML(xml, flags)
        except lv.libvirtError as e:
            raise self._error(e, f"snapshot disk {target} of domain {dom.name()}") from e

    def define_ceph_secret(self, conn: Any, user: str, key: str) -> str:
        """The UUID of the libvirt secret holding client ``user``'s cephx key: defined once (found again
        by its usage name afterwards), its value set to ``key`` (a rotated key replaces the old one)."""
        lv = self.lv
        usage = f"client.{user} secret"
        try:
            secret = conn.secretLookupByUsage(lv.VIR_SECRET_USAGE_TYPE_CEPH, usage)
        except lv.libvirtError as e:
            if e.get_error_code() != lv.VIR_ERR_NO_SECRET:
                raise self._error(e, "look up the ceph secret") from e
            xml = (
                "<secret ephemeral='no' private='yes'><description>Atoll: cephx key of "
                f"client.{_text(user)}</description><usage type='ceph'><name>{_text(usage)}</name>"
                "</usage></secret>"
            )
            try:
                secret = conn.secretDefineXML(xml)
            except lv.libvirtError as e2:
                raise self._error(e2, "define the ceph secret") from e2
            LOG.info("defined libvirt secret %s for %s", secret.UUIDString(), usage)
        try:
            secret.setValue(base64.b64decode(key))
        except lv.libvirtError as e:
            raise self._error(e, "store the ceph key in its secret") from e
        uuid: str = secret.UUIDString()
        return uuid


def _attr(value: str) -> str:
    """A quoted XML attribute value."""
    return "'" + value.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;") + "'"


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cephx_key(ceph_conf: str, user: str) -> str | None:
    """client.``user``'s cephx key (base64), from ``key``/``keyring`` of its configuration; None when
    the cluster runs without cephx (``auth_client_required = none``): libvirt then needs no secret."""
    from provider.datapath.ceph import bindings as ceph_bindings

    rados, _ = ceph_bindings()
    conn = rados.Rados(conffile=ceph_conf, rados_id=user)
    try:
        if conn.conf_get("auth_client_required").replace(" ", "") == "none":
            return None
        key: str = conn.conf_get("key") or ""
        keyrings = [p for p in conn.conf_get("keyring").split(",") if p]
    finally:
        conn.shutdown()
    for path in keyrings:
        key = key or _keyring_key(path, f"client.{user}") or ""
    if not key:
        raise BadConfiguration(
            reason=f"no cephx key of client.{user} in {', '.join(keyrings) or 'any keyring'}"
        )
    return key


def _keyring_key(path: str, entity: str) -> str | None:
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    section = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section == entity and line.partition("=")[0].strip() == "key":
            return line.partition("=")[2].strip()
    return None
