"""GuestFS over a loop mount: every component opened with O_NOFOLLOW from the guest root's fd."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from collections.abc import Iterator

from atoll_common.rollback import rollback
from customization.errors import GuestPathError
from customization.guestfs import loop
from customization.guestfs.base import SELINUX_XATTR, GuestFS, Stat, kind_of

LOG = logging.getLogger(__name__)
_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NODE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class MountedFS(GuestFS):
    """The root filesystem mounted through a loop device (needs root; used for xfs and btrfs)."""

    kind = "mount"

    def __init__(self, disk: str, offset: int, size: int, fstype: str) -> None:
        self._stack = contextlib.ExitStack()
        with rollback() as undo:
            undo.push(self._stack.close)
            self.mountpoint = self._stack.enter_context(loop.mounted(disk, offset, size, fstype))
            self._root = os.open(self.mountpoint, _DIR)
            self._stack.callback(os.close, self._root)
        self.fstype = fstype

    def close(self) -> None:
        if os.path.ismount(self.mountpoint):
            os.sync()
        self._stack.close()

    # ---- walking -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _at(self, path: str) -> Iterator[tuple[int, str]]:
        """Yield (dir_fd, name) for canonical ``path``; each directory opened with O_NOFOLLOW."""
        parts = [p for p in path.split("/") if p]
        fd = os.dup(self._root)
        try:
            for part in parts[:-1]:
                try:
                    nxt = os.open(part, _DIR, dir_fd=fd)
                except OSError as e:
                    raise GuestPathError(f"{path}: {part} is not a plain directory in the guest") from e
                os.close(fd)
                fd = nxt
            yield fd, (parts[-1] if parts else ".")
        finally:
            os.close(fd)

    def _open_node(self, path: str) -> int:
        with self._at(path) as (dfd, name):
            try:
                return os.open(name, _NODE, dir_fd=dfd)
            except OSError as e:
                raise GuestPathError(f"cannot open {path} in the guest: {e.strerror}") from e

    # ---- primitives ----------------------------------------------------------------------------------
    def _lstat(self, path: str) -> Stat | None:
        with self._at(path) as (dfd, name):
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                return None
            except NotADirectoryError:
                return None
        return Stat(kind_of(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size)

    def _readlink(self, path: str) -> str:
        with self._at(path) as (dfd, name):
            return os.readlink(name, dir_fd=dfd)

    def _read(self, path: str) -> bytes:
        fd = self._open_node(path)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise GuestPathError(f"{path} is not a regular file in the guest")
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def _listdir(self, path: str) -> list[str]:
        fd = self._open_node(path)
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def _write(self, path: str, data: bytes, mode: int, uid: int, gid: int, label: bytes | None) -> None:
        with self._at(path) as (dfd, name):
            tmp = f".atoll-{secrets.token_hex(6)}"
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd
            )
            with rollback() as undo:
                undo.push(os.unlink, tmp, dir_fd=dfd)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fchown(fd, uid, gid)
                    os.fchmod(fd, mode)
                    if label is not None:
                        os.setxattr(fd, SELINUX_XATTR, label)
                finally:
                    os.close(fd)
                os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)

    def _mkdir(self, path: str, mode: int, uid: int, gid: int, label: bytes | None) -> None:
        with self._at(path) as (dfd, name):
            os.mkdir(name, 0o700, dir_fd=dfd)
        self._set_attrs(path, mode, uid, gid, label)

    def _set_attrs(self, path: str, mode: int, uid: int, gid: int, label: bytes | None = None) -> None:
        fd = self._open_node(path)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            if label is not None:
                os.setxattr(fd, SELINUX_XATTR, label)
        finally:
            os.close(fd)

    def _unlink(self, path: str) -> None:
        with self._at(path) as (dfd, name):
            os.unlink(name, dir_fd=dfd)

    def _get_label(self, path: str) -> bytes | None:
        try:
            fd = self._open_node(path)
        except GuestPathError:
            return None
        try:
            return os.getxattr(fd, SELINUX_XATTR)
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.ENOTSUP):
                return None
            raise
        finally:
            os.close(fd)
