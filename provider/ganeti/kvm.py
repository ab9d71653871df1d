"""What Atoll does for Ganeti's kvm hypervisor: userspace URIs each Ganeti version accepts, and running
guests that learn their disk grew.

Userspace URIs (the ``kvm:`` line of ``attach``). Ganeti 3.0 puts the URI into ``-drive
file=URI,format=raw,…`` as it is: Atoll gives ``nbd:unix:SOCKET`` (qcow2, the qemu-storage-daemon's
export), the volume's file (reflink) or ``rbd:POOL/IMAGE:id=…:conf=…`` (rbd), with commas doubled, as
QEMU's option syntax wants. Ganeti 3.1 starts QEMU with ``-blockdev`` and takes only ``rbd:`` and
``gluster://`` URIs, on raw disks: there ``attach`` of a qcow2 or reflink volume with access=userspace
fails at once with a clear message (give the disk access=kernelspace: the block device line), instead
of the instance failing to start later; rbd volumes keep their ``rbd:`` URI (without a namespace, which
3.1 cannot express).

``gnt-instance grow-disk`` on a running instance calls the provider's ``grow`` and stops there: Ganeti
3.0 never tells the instance's QEMU, so the guest would see the new size only after a restart. ``grow``
therefore asks QEMU itself, on the instance's QMP monitor (the socket Ganeti's kvm hypervisor keeps in
its control directory), to ``block_resize`` the drive that opened the volume's device or URI; QEMU then
announces the new capacity to the guest (virtio-blk). A guest on an NBD URI (qcow2, userspace) cannot be
told — NBD has no way to announce a new size — and sees it at its next start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from provider.errors import CapabilityNotSupported, DataPathError

LOG = logging.getLogger(__name__)

CTRL_DIR = Path("/var/run/ganeti/kvm-hypervisor/ctrl")
GANETI_SHARE = Path("/usr/share/ganeti/default")  # a link to the running version's directory (3.0)


def ganeti_version(share: Path = GANETI_SHARE) -> tuple[int, int] | None:
    """The Ganeti version installed on this node; None when there is none to tell."""
    try:
        major, minor = Path(os.path.realpath(share)).name.split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def check_userspace(backend: str, version: tuple[int, int] | None) -> None:
    """Refuse access=userspace where Ganeti ``version`` could not start the guest on the URI."""
    if backend != "rbd" and version is not None and version >= (3, 1):
        raise CapabilityNotSupported(
            backend=backend,
            operation="give Ganeti 3.1 a userspace URI (it takes rbd: and gluster:// only): "
            "give the disk access=kernelspace",
        )


def drive_uri(uri: str) -> str:
    """``uri`` as Ganeti 3.0 may paste it into ``-drive file=…,format=raw``: commas doubled."""
    return uri.replace(",", ",,")


def opened(filename: str, targets: Iterable[str]) -> bool:
    """Whether QEMU's ``filename`` is one of ``targets``: a host path through Ganeti's symlink
    (instance-disks/NAME:N), a URI as QEMU normalizes it (nbd:unix:P -> nbd+unix://?socket=P)."""
    for t in targets:
        if t.startswith(("nbd:", "rbd:")):
            if t.split(":")[-1] in filename:
                return True
        elif t == filename or os.path.realpath(filename) == t:
            return True
    return False


def notify_grow(
    instance: str | None, targets: Iterable[str | None], size: int, ctrl_dir: Path = CTRL_DIR
) -> bool:
    """Resize, in the running QEMU of ``instance``, the drive that opened one of ``targets`` to ``size``
    bytes. False when no running guest of Ganeti's kvm hypervisor uses the volume, or QEMU refused."""
    monitor = ctrl_dir / f"{instance}.qmp"
    wanted = [t for t in targets if t]
    if not instance or not wanted or not monitor.exists():
        return False
    from provider.datapath.qmp import Qmp

    try:
        with Qmp(monitor, timeout=30) as qmp:
            for drive in qmp.execute("query-block"):
                inserted = drive.get("inserted") or {}
                if opened(str(inserted.get("file", "")), wanted):
                    qmp.execute("block_resize", device=drive["device"], size=size)
                    LOG.info("instance %s: QEMU drive %s now %d bytes", instance, drive["device"], size)
                    return True
    except DataPathError as e:
        LOG.warning("instance %s sees the new size after its next start: %s", instance, e)
    return False
