"""Which node may write an RBD volume: an advisory RADOS lock on the image header that outlives the process.

A node writing a volume holds the exclusive lock ``atoll`` on ``rbd_header.<id>`` with the cookie
``atoll:<node>``. Live migration needs the volume open on two nodes at once (Ganeti's ``open`` with
``VOL_OPEN_EXCLUSIVE=False``): each node then holds it *shared* with the tag ``atoll-migration``, and an
exclusive request is refused while any other node holds either kind. Ganeti's migration maps onto this
as: source ``open`` shared (its exclusive lock becomes shared), target ``open`` shared, target attach
joins, source ``close`` (its lock goes), target ``open`` exclusive (now alone), source detach.

NOTE: ``rbd lock add`` takes the lock librbd's exclusive-lock feature uses (``rbd_lock``): while it is
held every librbd writer (QEMU, rbd-fuse) waits for it forever. Atoll's lock has its own name, so writers
are never blocked by it; it decides who may attach. There is no lock upgrade: converting drops this
node's lock, then takes the new one. A crashed node keeps its lock until detach runs there again or an
admin runs ``rados -p POOL [-N NS] lock break rbd_header.<id> atoll <client> --lock-cookie atoll:<node>``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from atoll_common import process
from provider.datapath.ceph import Location, bindings
from provider.errors import DataPathError, InUse
from provider.utils.host import HOST

if TYPE_CHECKING:
    from provider.backends.rbd import RbdBackend

LOG = logging.getLogger(__name__)

NAME = "atoll"
TAG = "atoll-migration"
COOKIE_PREFIX = "atoll:"
Mode = Literal["exclusive", "shared"]


def cookie(node: str = HOST) -> str:
    return COOKIE_PREFIX + node


@dataclass(frozen=True)
class Holders:
    """Who holds the lock: this node's lockers (client, cookie), and the other holders' node names."""

    exclusive: bool
    mine: tuple[tuple[str, str], ...]
    others: tuple[str, ...]

    @property
    def held(self) -> Mode | None:
        if not self.mine:
            return None
        return "exclusive" if self.exclusive else "shared"


@dataclass(frozen=True)
class Header:
    """The header object of one image: where its lock lives."""

    backend: RbdBackend
    loc: Location
    oid: str
    run: process.Runner

    @classmethod
    def of(cls, backend: RbdBackend, locator: str, run: process.Runner) -> Header:
        loc = Location.parse(locator).at(None)
        with backend.open_image(str(loc), read_only=True) as image:
            return cls(backend, loc, f"rbd_header.{image.id()}", run)

    @property
    def ioctx(self) -> Any:
        return self.backend.cluster.ioctx(self.loc.pool, self.loc.namespace)

    def rados(self, *args: str) -> str:
        """The ``rados`` CLI on this header (the bindings cannot list or break locks)."""
        argv = ["rados", *self.backend.cli_args(), "-p", self.loc.pool]
        if self.loc.namespace:
            argv += ["--namespace", self.loc.namespace]
        try:
            return self.run([*argv, *args]).stdout
        except process.ProcessError as e:
            raise DataPathError(reason=f"rados lock on {self.loc.spec} failed: {e.stderr.strip()}") from e


def holders(h: Header) -> Holders:
    info = json.loads(h.rados("lock", "info", h.oid, NAME, "--format", "json") or "{}")
    lockers = [(x["name"], x["cookie"]) for x in info.get("lockers", [])]
    mine = tuple((client, ck) for client, ck in lockers if ck == cookie())
    others = tuple(ck.removeprefix(COOKIE_PREFIX) for _client, ck in lockers if ck != cookie())
    return Holders(info.get("type") == "exclusive", mine, others)


def acquire(h: Header, what: str, ref: str, mode: Mode | None = None) -> Mode:
    """Hold the lock in ``mode`` on this node; None: keep what this node holds, else exclusive, or shared
    when the volume is being migrated (other nodes hold it shared). Returns the mode held.

    :raises InUse: another node holds the lock in a conflicting way.
    """
    rados, _ = bindings()
    now = holders(h)
    if mode is None:
        if now.held:
            return now.held
        mode = "shared" if now.others and not now.exclusive else "exclusive"
    if now.held == mode:
        return mode
    if now.others and (mode == "exclusive" or now.exclusive):
        raise InUse(what=what, ref=ref, reason=_reason(now))
    _drop(h, now.mine)
    desc = f"atoll {mode} write lock of {HOST}"
    try:
        if mode == "exclusive":
            h.ioctx.lock_exclusive(h.oid, NAME, cookie(), desc=desc)
        else:
            h.ioctx.lock_shared(h.oid, NAME, cookie(), TAG, desc=desc)
    except (rados.ObjectBusy, rados.ObjectExists) as e:  # EBUSY / EEXIST: someone was faster
        raise InUse(what=what, ref=ref, reason=_reason(holders(h))) from e
    LOG.info("%s %s: %s lock taken by %s", what, ref, mode, HOST)
    return mode


def release(h: Header) -> None:
    """Drop every lock this node holds on the image (other nodes' locks stay)."""
    _drop(h, holders(h).mine)


def _drop(h: Header, mine: tuple[tuple[str, str], ...]) -> None:
    for client, ck in mine:  # each one was taken by some earlier process of this node
        h.rados("lock", "break", h.oid, NAME, client, "--lock-cookie", ck)


def _reason(now: Holders) -> str:
    nodes = ", ".join(sorted(set(now.others))) or "another node"
    if now.exclusive:
        return f"it is attached for writing on {nodes} (detach it there first)"
    return f"it is open on {nodes} for a migration"
