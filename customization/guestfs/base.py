"""The GuestFS interface: every path is resolved with the guest's root as '/', symlinks included."""

from __future__ import annotations

import abc
import posixpath
import stat
from collections import deque
from dataclasses import dataclass
from typing import Literal

from customization.errors import GuestDataError, GuestPathError

Kind = Literal["file", "dir", "link", "other"]


def kind_of(mode: int) -> Kind:
    """The Kind of an inode from its ``st_mode``."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


MAX_LINKS = 40
MAX_READ = 64 * 1024 * 1024
SELINUX_XATTR = "security.selinux"


@dataclass(frozen=True)
class Stat:
    kind: Kind
    mode: int  # permission bits only (0o7777)
    uid: int
    gid: int
    size: int


class GuestFS(abc.ABC):
    """Files of the guest. Public methods take guest paths and resolve them safely; the ``_``-prefixed
    primitives receive canonical paths (absolute, no symlink, no '.' or '..') and must not follow a
    symlink in any component."""

    kind = "abstract"
    labels_enabled = False  # set when the guest runs SELinux: replaced files keep their label

    # ---- primitives, implemented per backend -------------------------------------------------------
    @abc.abstractmethod
    def _lstat(self, path: str) -> Stat | None: ...

    @abc.abstractmethod
    def _readlink(self, path: str) -> str: ...

    @abc.abstractmethod
    def _read(self, path: str) -> bytes: ...

    @abc.abstractmethod
    def _listdir(self, path: str) -> list[str]: ...

    @abc.abstractmethod
    def _write(self, path: str, data: bytes, mode: int, uid: int, gid: int, label: bytes | None) -> None:
        """Create or atomically replace the regular file ``path``."""

    @abc.abstractmethod
    def _mkdir(self, path: str, mode: int, uid: int, gid: int, label: bytes | None) -> None: ...

    @abc.abstractmethod
    def _set_attrs(self, path: str, mode: int, uid: int, gid: int) -> None: ...

    @abc.abstractmethod
    def _unlink(self, path: str) -> None: ...

    @abc.abstractmethod
    def _get_label(self, path: str) -> bytes | None:
        """The SELinux label (security.selinux xattr) of ``path``, or None."""

    def flush(self) -> None:
        """Apply queued changes now (the debugfs backend batches writes); errors surface here."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the backend holds (mounts, loop devices, temporary files)."""

    # ---- resolution ---------------------------------------------------------------------------------
    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """The canonical guest path for ``path``: symlinks are followed with the guest root as '/', so an
        absolute or '..' target can never leave the guest. Missing final components are allowed."""
        if not path.startswith("/") or "\0" in path:
            raise GuestPathError(f"{path!r} is not an absolute guest path")
        todo = deque(path.split("/"))
        stack: list[str] = []
        links = 0
        while todo:
            name = todo.popleft()
            if name in ("", "."):
                continue
            if name == "..":
                if stack:
                    stack.pop()
                continue
            current = "/" + "/".join([*stack, name])
            last = not any(n not in ("", ".") for n in todo)
            st = self._lstat(current)
            if st is not None and st.kind == "link" and (follow_last or not last):
                links += 1
                if links > MAX_LINKS:
                    raise GuestPathError(f"{path}: too many levels of symbolic links")
                target = self._readlink(current)
                if target.startswith("/"):
                    stack = []
                todo.extendleft(reversed(target.split("/")))
                continue
            if not last and (st is None or st.kind != "dir"):
                missing = "does not exist" if st is None else "is not a directory"
                raise GuestPathError(f"{path}: {current} {missing} in the guest")
            stack.append(name)
        return "/" + "/".join(stack)

    def _parent_and_target(self, path: str) -> tuple[str, Stat | None]:
        """Resolve the parent directory (following links inside the guest), never the last component."""
        parent, name = posixpath.split(path.rstrip("/"))
        if not name:
            raise GuestPathError(f"{path!r} has no file name")
        real_parent = self.resolve(parent or "/")
        st = self._lstat(real_parent)
        if st is None or st.kind != "dir":
            raise GuestPathError(f"{path}: parent directory {parent} does not exist in the guest")
        target = posixpath.join(real_parent, name)
        return target, self._lstat(target)

    # ---- public API ----------------------------------------------------------------------------------
    def lstat(self, path: str) -> Stat | None:
        """Stat ``path`` without following its last component (the parents are resolved)."""
        try:
            return self._parent_and_target(path)[1]
        except GuestPathError:
            return None

    def stat(self, path: str) -> Stat | None:
        try:
            return self._lstat(self.resolve(path))
        except GuestPathError:
            return None

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def read(self, path: str) -> bytes:
        """Read a regular file (symlinks followed inside the guest)."""
        real = self.resolve(path)
        st = self._lstat(real)
        if st is None:
            raise GuestDataError(f"{path} does not exist in the guest")
        if st.kind != "file":
            raise GuestPathError(f"{path} is not a regular file in the guest")
        if st.size > MAX_READ:
            raise GuestDataError(f"{path} is too large ({st.size} bytes)")
        return self._read(real)

    def read_text(self, path: str) -> str:
        return self.read(path).decode("utf-8", "surrogateescape")

    def listdir(self, path: str) -> list[str]:
        real = self.resolve(path)
        st = self._lstat(real)
        if st is None or st.kind != "dir":
            raise GuestPathError(f"{path} is not a directory in the guest")
        return sorted(self._listdir(real))

    def write(
        self,
        path: str,
        data: bytes,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        label: bytes | None = None,
    ) -> None:
        """Create or replace a regular file. A symlink or anything but a regular file in its place is
        refused; an existing file keeps its mode, owner and SELinux label unless told otherwise."""
        target, st = self._parent_and_target(path)
        if st is not None and st.kind != "file":
            what = "a symbolic link" if st.kind == "link" else f"a {st.kind}"
            raise GuestPathError(f"refusing to write {path}: it is {what} in the guest")
        if st is not None:
            mode = st.mode if mode is None else mode
            uid = st.uid if uid is None else uid
            gid = st.gid if gid is None else gid
            if label is None and self.labels_enabled:
                label = self._get_label(target)
        self._write(target, data, 0o644 if mode is None else mode, uid or 0, gid or 0, label)

    def ensure_dir(self, path: str, mode: int, uid: int, gid: int, label: bytes | None = None) -> bool:
        """Make ``path`` a real directory (not a symlink) with exactly this mode and owner.

        Returns True when something changed. Parents must exist (they are resolved inside the guest).
        """
        target, st = self._parent_and_target(path)
        if st is None:
            self._mkdir(target, mode, uid, gid, label)
            return True
        if st.kind != "dir":
            what = "a symbolic link" if st.kind == "link" else f"a {st.kind}"
            raise GuestPathError(f"refusing to use {path}: it is {what} in the guest, not a directory")
        if (st.mode, st.uid, st.gid) != (mode, uid, gid):
            self._set_attrs(target, mode, uid, gid)
            return True
        return False

    def remove(self, path: str) -> bool:
        """Remove a file or symlink (never what it points to); False when there was nothing."""
        target, st = self._parent_and_target(path)
        if st is None:
            return False
        if st.kind == "dir":
            raise GuestPathError(f"refusing to remove {path}: it is a directory")
        self._unlink(target)
        return True

    def label_of(self, path: str) -> bytes | None:
        real = self.resolve(path)
        return self._get_label(real) if self._lstat(real) is not None else None
