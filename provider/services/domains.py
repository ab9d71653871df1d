"""libvirt domains (``store.domains``): plug volumes into guests and unplug them. The plug is recorded on
the volume's attachment (domain and disk target), so the data path is released only after the guest let
the disk go, and live grow and snapshot of a qcow2 file QEMU opens itself go through libvirt."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from atoll_common.rollback import rollback
from provider.errors import CapabilityNotSupported, Conflict, InUse, NotFound
from provider.model import Resource
from provider.services.base import Service

if TYPE_CHECKING:
    from provider.datapath.domains import Libvirt
    from provider.model import Attachment
    from provider.services.datapath import DataPath


class DomainService(Service):
    @property
    def datapath(self) -> DataPath:
        return self.store.datapath

    def libvirt(self) -> Libvirt:
        from provider.datapath.domains import Libvirt

        return Libvirt(self.store.config.libvirt.uri)

    # ---- XML ---------------------------------------------------------------------------------------
    def xml(self, ref: str, target: str | None = None, direct: bool = False) -> str:
        """The ``<disk>`` element of ``ref`` as attached on this host (``direct``: of its qcow2 file, which
        needs no attachment); for rbd with cephx the libvirt secret it names is defined first."""
        with self.catalog.read() as conn:
            res = self.resolve(conn, ref)
            self.check_read(conn, res)
        if direct:
            att = self.datapath.attacher(res, direct=True).attach(res, self.datapath.request(res, True, None))
        else:
            found = self.datapath.attachment(res.id)
            if found is None:
                raise Conflict(
                    reason=f"{res.kind} {res.name} is not attached on this host: attach it first "
                    f"(atoll volume attach {res.name} [--userspace]), or give --direct for a qcow2 volume"
                )
            att = found
        return self.render(res, att, target or att.target or "vda")

    def render(
        self, res: Resource, att: Attachment, target: str, conn: Any = None, define_secret: bool = True
    ) -> str:
        """``att`` as a ``<disk>``; rbd with cephx names the libvirt secret of its key: by UUID once
        defined (``define_secret``, idempotent), else by usage name."""
        from provider.datapath.domains import cephx_key
        from provider.datapath.libvirt import disk_xml

        secret, cephx = None, True
        if att.kind == "rbd":
            store_cfg = self.store.config.store
            if store_cfg.namespace:
                # NOTE: libvirt (9.0 here) splits an rbd disk's name into pool/image only.
                raise CapabilityNotSupported(
                    backend="rbd",
                    operation=f"give libvirt a volume inside RBD namespace {store_cfg.namespace!r} (libvirt "
                    "names pool/image only: use a store without store.namespace for libvirt guests)",
                )
            key = cephx_key(store_cfg.ceph_conf, store_cfg.user)
            cephx = key is not None
            if key is not None and define_secret:
                lv = self.libvirt()
                if conn is not None:
                    secret = lv.define_ceph_secret(conn, store_cfg.user, key)
                else:
                    with lv.connect() as own:
                        secret = lv.define_ceph_secret(own, store_cfg.user, key)
        return disk_xml(att, self.store.config.libvirt, target, secret, cephx)

    # ---- plug / unplug -----------------------------------------------------------------------------
    def attach(
        self,
        ref: str,
        domain: str,
        *,
        target: str | None = None,
        config: bool = False,
        direct: bool = False,
        readonly: bool | None = None,
    ) -> Attachment:
        """Plug ``ref`` into libvirt domain ``domain`` (running: hot-plug; ``config``: also into its
        persistent definition) as disk ``target`` (default: the first free ``vdX``). The data path is the
        one attached already, else a userspace one (NBD for qcow2, the raw file, ``rbd``), or with
        ``direct`` the qcow2 file itself. Plugging a plugged volume into the same domain returns it."""
        lv = self.libvirt()
        with lv.connect() as conn, self.datapath.locked(ref) as res:
            dom = lv.domain(conn, domain)
            current = self.datapath.attachment(res.id)
            if current is not None and current.domain is not None:
                return self._already(res, current, domain, target)
            used = set(lv.live_disks(dom)) | set(lv.config_disks(dom))
            target = target or _free_target(used)
            if target in used:
                raise InUse(what="libvirt domain", ref=domain, reason=f"it has a disk {target} already")
            flags = lv.flags(dom, config)
            if current is not None and not direct:
                att = current
            else:
                att = self.datapath.attach_locked(res, userspace=True, readonly=readonly, direct=direct)
            att = replace(att, domain=domain, target=target)
            with rollback() as undo:
                if current is None:
                    undo.push(self.datapath.detach_locked, res, replace(att, domain=None))
                lv.plug(dom, self.render(res, att, target, conn), flags)
                self.datapath.save(att)
            return att

    def _already(self, res: Resource, current: Attachment, domain: str, target: str | None) -> Attachment:
        if current.domain == domain and target in (None, current.target):
            return current
        raise InUse(
            what=res.kind,
            ref=res.name,
            reason=f"it is plugged into libvirt domain {current.domain} as {current.target} already",
        )

    def detach(self, ref: str, domain: str, timeout: float | None = None) -> None:
        """Unplug ``ref`` from ``domain`` (from its persistent definition too), wait until the guest has
        released it (at most ``timeout`` seconds, ``libvirt.detach_timeout`` by default), then release the
        data path. Idempotent: a volume no longer plugged anywhere is only released.

        :raises InUse: the guest did not let the disk go in time; it stays plugged and recorded.
        """
        wait = timeout if timeout is not None else self.store.config.libvirt.detach_timeout
        lv = self.libvirt()
        with lv.connect() as conn, self.datapath.locked(ref, detaching=True) as res:
            att = self.datapath.attachment(res.id)
            if att is None:
                return
            if att.domain != domain:
                where = f"libvirt domain {att.domain}" if att.domain else "no libvirt domain"
                raise Conflict(reason=f"{res.kind} {res.name} is plugged into {where}, not {domain}")
            try:
                dom = lv.domain(conn, domain)
            except NotFound:
                dom = None  # the domain is gone, and QEMU with it
            if dom is not None:
                lv.unplug(dom, att.target or "", wait)
            self.datapath.detach_locked(res, att)


def _free_target(used: set[str]) -> str:
    from provider.datapath.domains import free_target

    return free_target(used)
