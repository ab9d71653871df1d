"""The typed result of an attach: what a hypervisor uses (device, URI) and what detach must undo."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Mode = Literal["ro", "rw"]
Access = Literal["kernelspace", "userspace"]
Kind = Literal["block", "file", "nbd", "rbd"]
MODES = ("ro", "rw")
ACCESSES = ("kernelspace", "userspace")


@dataclass(frozen=True)
class Attachment:
    """One resource attached on one host.

    ``device`` is a block device path (kernelspace), ``uri`` what QEMU opens (userspace: ``nbd:unix:…``
    or a raw file path). ``path`` is the file behind the device (the data file, or a daemon's FUSE
    export); ``daemon_dir`` holds a supervised daemon's pid file, QMP socket and FUSE file;
    ``socket_dir`` its unix sockets (``daemon_dir`` unless that path is too long for a socket name).
    ``domain`` and ``target`` name the libvirt domain and disk the resource is plugged into (if any);
    ``direct``: QEMU opens the qcow2 file ``uri`` itself (no daemon between them).
    """

    resource_id: str
    mode: Mode
    access: Access
    kind: Kind
    device: str | None
    uri: str | None
    host: str
    path: str | None = None
    daemon_dir: str | None = None
    socket_dir: str | None = None
    domain: str | None = None
    target: str | None = None
    direct: bool = False

    @property
    def readonly(self) -> bool:
        return self.mode == "ro"

    @property
    def lines(self) -> list[str]:
        """What ``atoll volume attach`` prints: the device and/or the URI, one per line."""
        return [x for x in (self.device, self.uri) if x]

    def state(self) -> dict[str, Any]:
        """The fields detach needs beyond the indexed ones (stored as JSON in the catalog)."""
        state: dict[str, Any] = {
            "path": self.path,
            "daemon_dir": self.daemon_dir,
            "socket_dir": self.socket_dir,
        }
        if self.domain is not None:
            state.update(domain=self.domain, target=self.target, direct=self.direct)
        return state

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
