"""GuestFS for ext2/3/4 without root or a kernel mount: debugfs on ``disk?offset=N``."""

from __future__ import annotations

import logging
import os
import posixpath
import re
import shutil
import stat
import tempfile

from customization import process
from customization.errors import FilesystemError, GuestPathError
from customization.guestfs.base import SELINUX_XATTR, GuestFS, Kind, Stat

LOG = logging.getLogger(__name__)
_BANNER = re.compile(r"^debugfs \d+\.\d+")
_SAFE = re.compile(r'^[^"\\\x00-\x1f\x7f]*$')  # what debugfs' command parser can carry inside quotes
_NO_ATTR = "Extended attribute key not found"
_TYPE_BITS = {"file": 0o100000, "dir": 0o040000}


def _kind(mode: int) -> Kind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def _q(path: str) -> str:
    if not _SAFE.match(path):
        raise GuestPathError(f"{path!r}: quotes, backslashes and control characters are not supported here")
    return f'"{path}"'


class DebugfsFS(GuestFS):
    """Edits an unmounted ext filesystem in place with debugfs (one process per operation)."""

    kind = "debugfs"

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._tmp = tempfile.mkdtemp(prefix="atoll-debugfs-")
        self._dirs: dict[str, dict[str, tuple[int, Stat]]] = {}
        self.writes = 0

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    # ---- running debugfs -----------------------------------------------------------------------------
    def _run(self, commands: list[str], *, write: bool = False, allow: tuple[str, ...] = ()) -> str:
        """Run commands in one debugfs; debugfs exits 0 even when a command fails, so stderr decides."""
        cmdfile = os.path.join(self._tmp, "commands")
        with open(cmdfile, "w", encoding="utf-8") as f:
            f.write("\n".join(commands) + "\n")
        argv = ["debugfs", *(["-w"] if write else []), "-f", cmdfile, self.spec]
        result = process.run(argv)
        errors = [
            ln
            for ln in result.stderr.splitlines()
            if ln.strip() and not _BANNER.match(ln) and not any(a in ln for a in allow)
        ]
        if errors:
            raise FilesystemError(f"debugfs: {errors[0].strip()}")
        if write:
            self.writes += 1
        return result.stdout

    def _listing(self, path: str) -> dict[str, tuple[int, Stat]]:
        if path not in self._dirs:
            out = self._run([f"ls -p {_q(path)}"])
            entries: dict[str, tuple[int, Stat]] = {}
            for line in out.splitlines():
                if not line.strip() or line.startswith("debugfs:"):
                    continue
                fields = line.strip().split("/")
                if len(fields) != 8 or fields[0] or fields[7]:
                    raise FilesystemError(f"cannot parse the listing of {path} (odd file name?)")
                _, ino, mode_s, uid, gid, name, size, _ = fields
                if name in entries:
                    raise FilesystemError(f"the listing of {path} names {name!r} twice")
                mode = int(mode_s, 8)
                entries[name] = (
                    int(ino),
                    Stat(_kind(mode), stat.S_IMODE(mode), int(uid), int(gid), int(size or 0)),
                )
            self._dirs[path] = entries
        return self._dirs[path]

    def _entry(self, path: str) -> tuple[int, Stat] | None:
        if path == "/":
            return self._listing("/").get(".")
        parent, name = posixpath.split(path)
        return self._listing(parent).get(name)

    def _forget(self, path: str) -> None:
        parent = posixpath.dirname(path)
        self._dirs.pop(parent, None)
        self._dirs.pop(path, None)

    # ---- primitives ----------------------------------------------------------------------------------
    def _lstat(self, path: str) -> Stat | None:
        entry = self._entry(path)
        return entry[1] if entry else None

    def _ino(self, path: str) -> int:
        entry = self._entry(path)
        if entry is None:
            raise GuestPathError(f"{path} does not exist in the guest")
        return entry[0]

    def _readlink(self, path: str) -> str:
        ino = self._ino(path)
        out = self._run([f"stat <{ino}>"])
        for line in out.splitlines():
            if "Fast link dest:" in line:
                return line.split('"', 1)[1].rsplit('"', 1)[0]
        return self._dump(ino).decode("utf-8", "surrogateescape")

    def _dump(self, ino: int) -> bytes:
        local = os.path.join(self._tmp, f"dump-{ino}")
        try:
            self._run([f"dump <{ino}> {_q(local)}"])
            with open(local, "rb") as f:
                return f.read()
        finally:
            if os.path.exists(local):
                os.unlink(local)

    def _read(self, path: str) -> bytes:
        return self._dump(self._ino(path))

    def _listdir(self, path: str) -> list[str]:
        return [n for n in self._listing(path) if n not in (".", "..")]

    def _attr_commands(self, name: str, kind: str, mode: int, uid: int, gid: int) -> list[str]:
        return [
            f"sif {name} mode 0{_TYPE_BITS[kind] | mode:o}",
            f"sif {name} uid {uid}",
            f"sif {name} gid {gid}",
        ]

    def _label_commands(self, name: str, label: bytes | None) -> list[str]:
        if label is None:
            return []
        local = os.path.join(self._tmp, "label")
        with open(local, "wb") as f:
            f.write(label)
        return [f"ea_set -f {_q(local)} {name} {SELINUX_XATTR}"]

    def _write(self, path: str, data: bytes, mode: int, uid: int, gid: int, label: bytes | None) -> None:
        parent, base = posixpath.split(path)
        name = _q(base)
        fd, local = tempfile.mkstemp(dir=self._tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            commands = [f"cd {_q(parent)}"]
            if self._entry(path) is not None:
                commands.append(f"rm {name}")
            # debugfs `write` copies the host file's owner and mode: set them right after.
            commands += [f"write {_q(local)} {name}", *self._attr_commands(name, "file", mode, uid, gid)]
            commands += self._label_commands(name, label)
            self._forget(path)
            self._run(commands, write=True)
        finally:
            os.unlink(local)
        self._check_written(path, "file", len(data))

    def _check_written(self, path: str, kind: str, size: int | None) -> None:
        st = self._lstat(path)
        if st is None or st.kind != kind or (size is not None and st.size != size):
            raise FilesystemError(f"debugfs did not create {path} as expected")

    def _mkdir(self, path: str, mode: int, uid: int, gid: int, label: bytes | None) -> None:
        parent, base = posixpath.split(path)
        name = _q(base)
        commands = [f"cd {_q(parent)}", f"mkdir {name}", *self._attr_commands(name, "dir", mode, uid, gid)]
        commands += self._label_commands(name, label)
        self._forget(path)
        self._run(commands, write=True)
        self._check_written(path, "dir", None)

    def _set_attrs(self, path: str, mode: int, uid: int, gid: int) -> None:
        st = self._lstat(path)
        if st is None or st.kind not in _TYPE_BITS:  # never `sif mode` a symlink: it corrupts the fs
            raise GuestPathError(f"refusing to change {path}: not a regular file or directory")
        ino = self._ino(path)
        self._forget(path)
        self._run(self._attr_commands(f"<{ino}>", st.kind, mode, uid, gid), write=True)

    def _unlink(self, path: str) -> None:
        parent, base = posixpath.split(path)
        self._forget(path)
        self._run([f"cd {_q(parent)}", f"rm {_q(base)}"], write=True)

    def _get_label(self, path: str) -> bytes | None:
        ino = self._ino(path)
        local = os.path.join(self._tmp, "label-out")
        try:
            self._run([f"ea_get -f {_q(local)} <{ino}> {SELINUX_XATTR}"], allow=(_NO_ATTR,))
            if not os.path.exists(local):
                return None
            with open(local, "rb") as f:
                return f.read() or None
        finally:
            if os.path.exists(local):
                os.unlink(local)
