"""What every service shares: loading and resolving resources, pending operations, garbage collection."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, Table, delete, func, select, update

from provider.catalog import schema as t
from provider.errors import Ambiguous, Conflict, InUse, NotFound, PermissionDenied, StorageFull
from provider.model import Resource, build
from provider.services import names
from provider.services.catalog_listing import list_resources
from provider.utils.faults import failpoint
from provider.utils.host import HOST, my_start, now, proc_start
from provider.utils.names import UUID_RE

if TYPE_CHECKING:
    from provider.services.store import Store

LOG = logging.getLogger(__name__)


def res_key(rid: str) -> str:
    """The catalog lock key of one resource (PostgreSQL: writers of different resources run together)."""
    return f"resource:{rid}"


def name_key(what: str, name: str) -> str:
    """The catalog lock key of a name (``volume``, ``image``, ``object``) while it is checked and taken."""
    return f"name:{what}:{name}"


def op_owner_alive(res: Resource) -> bool:
    """Is the process that started ``res``'s pending operation still running? (unknowable elsewhere)"""
    if res.op_data.get("host") != HOST or res.op_pid is None:
        return True
    start = proc_start(res.op_pid)
    return start is not None and start == res.op_data.get("proc_start")


@dataclass(frozen=True)
class Caller:
    """Who is asking, as a project: ``name`` is the project id that owns what the caller creates.

    The local CLI trusts its OS user, which is the project of the same name; over HTTP the token says
    which project and roles (``admin``, ``member``, ``reader``) the request carries; ``user`` is the
    authenticated user's name (None for the CLI). Admins may set protected properties.
    """

    name: str
    admin: bool = False
    roles: tuple[str, ...] = ()
    user: str | None = None

    @property
    def effective_roles(self) -> tuple[str, ...]:
        """The roles that apply: the token's, or for the CLI ``admin`` (admins) or ``member``."""
        if self.roles:
            return self.roles
        return ("admin",) if self.admin else ("member",)

    @property
    def read_only(self) -> bool:
        """Its roles allow reading only (``reader``, without ``member`` or ``admin``)."""
        return not {"admin", "member"} & set(self.effective_roles)


class Service:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.catalog = store.catalog

    @property
    def caller(self) -> Caller:
        return self.store.caller

    # ---- loading ---------------------------------------------------------------------------------
    def load(self, conn: Connection, rid: str, *, states: tuple[str, ...] = ("available",)) -> Resource:
        row = conn.execute(select(t.resources).where(t.resources.c.id == rid)).first()
        if row is None or row.state not in states:
            raise NotFound(what="resource", ref=rid)
        obj = conn.execute(select(t.object_views).where(t.object_views.c.resource_id == rid)).first()
        img = conn.execute(select(t.image_views).where(t.image_views.c.resource_id == rid)).first()
        vol = conn.execute(select(t.volume_views).where(t.volume_views.c.resource_id == rid)).first()
        members: tuple[str, ...] = ()
        if img is not None:
            members = tuple(
                r.member
                for r in conn.execute(
                    select(t.image_members.c.member)
                    .where(t.image_members.c.resource_id == rid)
                    .order_by(t.image_members.c.member)
                )
            )
        return build(row, obj, img, vol, members)

    def resolve(self, conn: Connection, ref: str, what: str = "resource") -> Resource:
        """REF is an id, ``container/name``, or an image/snapshot/volume name: the caller's own
        resource of that name, else the one of another project the caller may read (see ``names``)."""
        if UUID_RE.match(ref):
            try:
                return self.load(conn, ref)
            except NotFound:
                raise NotFound(what=what, ref=ref) from None
        found = {c[0]: c for c in names.named(conn, ref)}
        own = {rid: c for rid, c in found.items() if c[2] == self.caller.name}
        if not own:
            own = {rid: c for rid, c in found.items() if self.can_read(conn, self.load(conn, rid))}
        if not own:
            raise NotFound(what=what, ref=ref)
        if len(own) > 1:
            raise Ambiguous(ref=ref, choices=names.choices(own))
        return self.load(conn, next(iter(own)))

    def get(self, ref: str, what: str = "resource") -> Resource:
        with self.catalog.read() as conn:
            return self.resolve(conn, ref, what)

    @contextmanager
    def write_one(self, ref: str, what: str, *keys: str) -> Iterator[Connection]:
        """A write transaction that locks the one resource ``ref`` names (and ``keys``, e.g. a name it
        takes) instead of the whole catalog (PostgreSQL). ``ref`` is resolved again inside: if a rename
        or delete won the race, the caller gets a clear conflict, never the wrong resource."""
        rid = ref if UUID_RE.match(ref) else self.get(ref, what).id
        with self.catalog.write(res_key(rid), *keys) as conn:
            if not UUID_RE.match(ref) and self.resolve(conn, ref, what).id != rid:
                raise Conflict(reason=f"{what} {ref!r} changed while it was being updated: try again")
            yield conn

    def list_view(
        self, view: Table, *order: ColumnElement[Any], where: ColumnElement[bool] | None = None
    ) -> list[Resource]:
        """The available resources that have ``view`` and that the caller may read, in ``order``: one
        query, whatever the number of resources."""
        with self.catalog.read() as conn:
            return list_resources(conn, view, self.caller.name, self.caller.admin, order, where)

    # ---- access ----------------------------------------------------------------------------------
    def can_read(self, conn: Connection, res: Resource) -> bool:
        if self.caller.admin or res.owner == self.caller.name:
            return True
        if res.image is None:
            return False
        return res.image.visibility == "public" or self.caller.name in res.image.members

    def check_read(self, conn: Connection, res: Resource) -> None:
        if not self.can_read(conn, res):
            raise NotFound(what=res.kind, ref=res.name)

    def check_owner(self, res: Resource) -> None:
        if not (self.caller.admin or res.owner == self.caller.name):
            raise PermissionDenied(reason=f"{res.kind} {res.name!r} belongs to {res.owner}")

    # ---- pending operations and collection --------------------------------------------------------
    def insert_pending(
        self,
        conn: Connection,
        *,
        rid: str,
        size: int,
        mode: str,
        backend: str,
        locator: str,
        disk_format: str,
        parent: str | None,
        op: str,
        remove_on_abort: list[str],
    ) -> None:
        """Record an operation before touching the backend, so a crash can always be undone. The
        resource's lock file is made now, while there is room: undoing the operation on a store that
        fills up meanwhile needs the lock, not a new file."""
        self.lock_file(rid)
        stamp = now()
        conn.execute(
            t.resources.insert().values(
                id=rid,
                size=size,
                mode=mode,
                backend=backend,
                locator=locator,
                disk_format=disk_format,
                parent=parent,
                state="pending",
                owner=self.caller.name,
                created_at=stamp,
                updated_at=stamp,
                op=op,
                op_pid=os.getpid(),
                op_host=HOST,
                op_data=json.dumps(
                    {"host": HOST, "proc_start": my_start(), "remove_on_abort": remove_on_abort}
                ),
            )
        )

    def mark_available(self, conn: Connection, rid: str, **values: Any) -> None:
        conn.execute(
            update(t.resources)
            .where(t.resources.c.id == rid)
            .values(
                state="available",
                op=None,
                op_pid=None,
                op_host=None,
                op_data=None,
                updated_at=now(),
                **values,
            )
        )

    def abort_pending(self, rid: str) -> None:
        """Undo a pending operation of this process: drop its rows, then remove what it created."""
        with self.catalog.write(res_key(rid)) as conn:
            files = self._drop_pending(conn, rid)
        self._remove_files(files)

    def _drop_pending(self, conn: Connection, rid: str) -> list[tuple[str, str]]:
        row = conn.execute(select(t.resources).where(t.resources.c.id == rid)).first()
        if row is None or row.state != "pending":
            return []
        data = json.loads(row.op_data or "{}")
        conn.execute(delete(t.deps).where(t.deps.c.resource_id == rid))
        conn.execute(delete(t.resources).where(t.resources.c.id == rid))
        return [(row.backend, loc) for loc in data.get("remove_on_abort", [])]

    def reap_dead(self, conn: Connection) -> list[tuple[str, str]]:
        """Drop pending operations whose process died on this host; return the files to remove. Every
        write reaps: only owned rows are read (queued images, ownerless, can be thousands)."""
        files: list[tuple[str, str]] = []
        r = t.resources.c
        rows = conn.execute(
            select(r.id, r.op_pid, r.op_data).where(r.state == "pending", r.op_host == HOST).order_by(r.id)
        ).all()
        for rid, pid, data in rows:
            start = proc_start(pid)
            if start is not None and start == json.loads(data or "{}").get("proc_start"):
                continue  # its process is still running
            try:
                res = self.load(conn, rid, states=("pending",))
            except NotFound:  # finished, or reaped by another process meanwhile
                continue
            if not op_owner_alive(res):
                self.catalog.lock_keys(conn, res_key(rid))
                if self._left_for_fsck(conn, res):
                    continue
                LOG.warning("cleaning up %s of %s left by dead process %s", res.op, rid, res.op_pid)
                files += self._drop_pending(conn, rid)
        return files

    def _left_for_fsck(self, conn: Connection, res: Resource) -> bool:
        """A dead snapshot that must be completed, not undone (see snapshot_recovery): fsck does it."""
        from provider.services.snapshot_recovery import frozen_top_taken

        if frozen_top_taken(self.store, conn, res) is None:
            return False
        LOG.warning(
            "snapshot %s was killed after its volume moved to a new top: run 'atoll fsck --repair'", res.id
        )
        return True

    def dependents(self, conn: Connection, rid: str) -> int:
        return conn.execute(
            select(func.count()).select_from(t.deps).where(t.deps.c.requires_id == rid)
        ).scalar_one()

    def hide(self, conn: Connection, rid: str) -> list[tuple[str, str]]:
        """Remove every view of ``rid``; physically collect it (and freed ancestors) if nothing needs it."""
        self.catalog.lock_keys(conn, res_key(rid))
        for view in (t.object_views, t.image_views, t.volume_views):
            conn.execute(delete(view).where(view.c.resource_id == rid))
        conn.execute(
            update(t.resources).where(t.resources.c.id == rid).values(state="deleted", updated_at=now())
        )
        return self.collect(conn, rid)

    def collect(self, conn: Connection, rid: str) -> list[tuple[str, str]]:
        """Delete hidden resources nobody requires, walking up the dependency graph; return their files.

        The caller removes the files after the transaction commits: a crash in between leaves an orphan
        file (fsck finds it), never a catalog row pointing at a missing file.
        """
        files: list[tuple[str, str]] = []
        todo = [rid]
        while todo:
            cur = todo.pop()
            self.catalog.lock_keys(conn, res_key(cur))  # up the graph only: no lock cycle
            row = conn.execute(select(t.resources).where(t.resources.c.id == cur)).first()
            if row is None or row.state != "deleted" or self.dependents(conn, cur):
                continue
            required = [
                r for (r,) in conn.execute(select(t.deps.c.requires_id).where(t.deps.c.resource_id == cur))
            ]
            conn.execute(delete(t.deps).where(t.deps.c.resource_id == cur))
            conn.execute(delete(t.resources).where(t.resources.c.id == cur))
            shared = conn.execute(
                select(func.count()).select_from(t.resources).where(t.resources.c.locator == row.locator)
            ).scalar_one()
            if not shared:
                files.append((row.backend, row.locator))
                for table in (t.blocks, t.digests):
                    conn.execute(
                        delete(table).where(table.c.backend == row.backend, table.c.locator == row.locator)
                    )
            todo.extend(required)
        return files

    def _remove_files(self, files: list[tuple[str, str]]) -> None:
        for backend, locator in files:
            try:
                self.store.backend(backend).remove(locator)
            except Exception:  # the catalog is already consistent; fsck will find the orphan
                LOG.exception("could not remove %s from %s", locator, backend)

    @contextmanager
    def write_then_remove(self, *keys: str) -> Iterator[tuple[Connection, list[tuple[str, str]]]]:
        """A write transaction (locking ``keys``, see Catalog.write) that also reaps dead operations;
        files queued in the list are removed only after the commit."""
        files: list[tuple[str, str]] = []
        with self.catalog.write(*keys) as conn:
            files += self.reap_dead(conn)
            yield conn, files
        if files:
            failpoint("collect.before-remove")
        self._remove_files(files)

    # ---- locks -----------------------------------------------------------------------------------
    def lock_file(self, rid: str) -> Path:
        """The file ``lock`` flocks for ``rid``, made if missing (a full store: StorageFull)."""
        path = self.store.config.store.path / "locks" / f"{rid}.lock"
        if not path.exists():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):  # no block or inode left, or over quota
                    raise StorageFull(path=str(self.store.config.store.path)) from e
                raise
        return path

    @contextmanager
    def lock(self, rid: str, what: str = "volume", wait: float = 120.0) -> Iterator[None]:
        """Serialize operations on one resource across processes, and across hosts when the catalog is
        shared (PostgreSQL); released if the holder dies."""
        fd = os.open(self.lock_file(rid), os.O_RDWR)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise _busy(what, rid, fd) from None
                    time.sleep(0.05)
            _say_holder(fd)
            with self.catalog.held(f"resource:{rid}", deadline) as taken:
                if not taken:
                    raise InUse(what=what, ref=rid, reason="an operation on another host holds its lock")
                yield
        finally:
            os.close(fd)


def _say_holder(fd: int) -> None:
    """Write who holds the lock, for the error the next one waiting prints; on a full store it stays
    unsaid (the lock itself needs no space)."""
    os.ftruncate(fd, 0)
    with contextlib.suppress(OSError):
        os.pwrite(fd, f"pid {os.getpid()} on {HOST}".encode(), 0)


def _busy(what: str, rid: str, fd: int) -> InUse:
    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
    return InUse(
        what=what,
        ref=rid,
        reason=f"another operation ({holder}) holds its lock: wait for it to finish, or stop it if it hangs",
    )
