"""Ceph plumbing for the rbd backend: lazy bindings, locators, one connection per process, error table."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import quote, unquote

from provider.config import StoreConfig
from provider.errors import (
    AlreadyExists,
    AtollError,
    BackendError,
    BadConfiguration,
    InUse,
    NotFound,
    PermissionDenied,
    StorageFull,
)

LOG = logging.getLogger(__name__)

# NOTE: the bindings exist only as Debian's python3-rados/python3-rbd (no PyPI wheel); the venv sees them
# through --system-site-packages (scripts/install-deps.sh).
BINDINGS_HINT = "apt-get install python3-rados python3-rbd, and use a venv with --system-site-packages"
# Fail instead of hanging forever when the monitors cannot be reached (seconds).
CONNECT_TIMEOUT = "20"


def bindings() -> tuple[ModuleType, ModuleType]:
    """``(rados, rbd)``, imported on first use; BadConfiguration with the fix when they are missing."""
    try:
        import rados
        import rbd
    except ImportError as e:
        raise BadConfiguration(reason=f"the Ceph bindings are missing ({e}): {BINDINGS_HINT}") from e
    return rados, rbd


@dataclass(frozen=True)
class Location:
    """Where an RBD object lives: ``pool/[namespace/]image[@snapshot]``, each part %-quoted."""

    pool: str
    namespace: str
    image: str
    snap: str | None = None

    @classmethod
    def parse(cls, locator: str) -> Location:
        head, _, snap = locator.partition("@")
        parts = head.split("/")
        if len(parts) == 2:
            parts.insert(1, "")
        if len(parts) != 3 or not parts[0] or not parts[2] or (snap == "" and "@" in locator):
            raise BackendError(reason=f"bad rbd locator {locator!r} (expected pool/[namespace/]image[@snap])")
        pool, ns, image = (unquote(p) for p in parts)
        return cls(pool, ns, image, unquote(snap) if snap else None)

    def __str__(self) -> str:
        parts = [self.pool, self.namespace, self.image] if self.namespace else [self.pool, self.image]
        text = "/".join(quote(p, safe="") for p in parts)
        return f"{text}@{quote(self.snap, safe='')}" if self.snap else text

    def at(self, snap: str | None) -> Location:
        return Location(self.pool, self.namespace, self.image, snap)

    @property
    def spec(self) -> str:
        """The unquoted ``pool/[ns/]image[@snap]`` spec the rbd CLI and QEMU understand."""
        parts = [self.pool, self.namespace, self.image] if self.namespace else [self.pool, self.image]
        return "/".join(parts) + (f"@{self.snap}" if self.snap else "")


def translate(e: Exception, loc: Location | str) -> AtollError:
    """Map a native rados/rbd error to an Atoll error (glance's table: busy → in use, full → storage full)."""
    rados, rbd = bindings()
    where = loc.spec if isinstance(loc, Location) else loc
    pool = loc.pool if isinstance(loc, Location) else where.split("/")[0]
    if isinstance(e, rbd.ImageNotFound | rados.ObjectNotFound):
        return NotFound(what="rbd image", ref=where)
    if isinstance(e, rbd.ImageBusy):
        return InUse(what="rbd image", ref=where, reason="busy (clones use it, or it is locked or open)")
    if isinstance(e, rbd.ImageHasSnapshots):
        return InUse(what="rbd image", ref=where, reason="it still has snapshots")
    if isinstance(e, rbd.NoSpace | rbd.DiskQuotaExceeded | rados.NoSpace):
        return StorageFull(path=f"rbd pool {pool}")
    if isinstance(e, rbd.ImageExists):
        return AlreadyExists(what="rbd image", name=where)
    if isinstance(e, rbd.PermissionError | rados.PermissionError):
        return PermissionDenied(reason=f"ceph refused access to {where}: {e}")
    return BackendError(reason=f"{where}: {e}")


@contextmanager
def translated(loc: Location | str) -> Iterator[None]:
    """Run a block of native calls; their errors leave as Atoll errors (``raise … from``)."""
    rados, rbd = bindings()
    try:
        yield
    except (rbd.Error, rados.Error) as e:
        raise translate(e, loc) from e


class Cluster:
    """One lazily opened RADOS connection for the process, with an io context per (pool, namespace)."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._conn: Any = None
        self._ioctx: dict[tuple[str, str], Any] = {}
        self._mutex = threading.Lock()

    def connect(self) -> Any:
        with self._mutex:
            if self._conn is None:
                rados, _ = bindings()
                try:
                    conn = rados.Rados(
                        conffile=self.config.ceph_conf,
                        rados_id=self.config.user,
                        conf={
                            "client_mount_timeout": CONNECT_TIMEOUT,
                            "rados_mon_op_timeout": CONNECT_TIMEOUT,
                        },
                    )
                    conn.connect(timeout=int(CONNECT_TIMEOUT))
                except rados.Error as e:
                    where = f"{self.config.ceph_conf} as client.{self.config.user}"
                    raise BadConfiguration(reason=f"cannot connect to Ceph ({where}): {e}") from e
                self._conn = conn
            return self._conn

    def ioctx(self, pool: str, namespace: str = "") -> Any:
        key = (pool, namespace)
        if key not in self._ioctx:
            conn = self.connect()
            rados, _ = bindings()
            try:
                io = conn.open_ioctx(pool)
            except rados.ObjectNotFound as e:
                raise BadConfiguration(reason=f"rbd pool {pool!r} does not exist") from e
            except rados.Error as e:
                raise translate(e, pool) from e
            io.set_namespace(namespace)
            self._ioctx[key] = io
        return self._ioctx[key]

    def close(self) -> None:
        for io in self._ioctx.values():
            io.close()
        self._ioctx.clear()
        if self._conn is not None:
            self._conn.shutdown()
            self._conn = None
