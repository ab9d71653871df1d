"""GuestFS for ext2/3/4 without root or a kernel mount: debugfs on ``disk?offset=N``."""

from __future__ import annotations

import logging
import os
import posixpath
import re
import shutil
import stat
import tempfile

from atoll_common import process
from customization.errors import FilesystemError, GuestPathError
from customization.guestfs.base import SELINUX_XATTR, GuestFS, Stat, kind_of

LOG = logging.getLogger(__name__)
_BANNER = re.compile(r"^debugfs \d+\.\d+")
_SAFE = re.compile(r'^[^"\\\x00-\x1f\x7f]*$')  # what debugfs' command parser can carry inside quotes
_NO_ATTR = "Extended attribute key not found"
_TYPE_BITS = {"file": 0o100000, "dir": 0o040000}


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
        self._files: dict[int, bytes] = {}  # prefetched contents, by inode
        self._pending: list[str] = []  # write commands queued until the next read or flush()
        self._checks: list[tuple[str, str, int | None]] = []
        self._written: list[tuple[str, str, int | None]] = []
        self.calls = 0

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def flush(self) -> None:
        """Run the queued writes in one debugfs, then read back what they should have made."""
        if not self._pending:
            return
        commands, checks = self._pending, self._checks
        self._pending, self._checks = [], []
        try:
            self._run(commands, write=True)
        except FilesystemError:
            self._dirs.clear()
            self._files.clear()
            raise
        self._written += [c for c in checks if c[1]]

    def verify(self) -> None:
        """Read back, from fresh listings, everything written since the last verify()."""
        self.flush()
        written, self._written = self._written, []
        for path, _, _ in written:
            self._forget(path)
        for path, kind, size in written:
            self._check_written(path, kind, size)

    def _queue(self, commands: list[str], path: str, after: Stat | None, new_inode: bool = True) -> None:
        """Queue ``commands`` and update the cached listing as if they had run (inode -1: not known yet)."""
        self._pending += commands
        size = after.size if after is not None and after.kind == "file" else None
        self._checks.append((path, after.kind if after is not None else "", size))
        parent, name = posixpath.split(path)
        listing = self._dirs.get(parent)
        if listing is None:
            return
        if after is None:
            listing.pop(name, None)
        else:
            old = listing.get(name)
            listing[name] = (old[0] if old and not new_inode else -1, after)
        self._dirs.pop(path, None)

    def _local(self, data: bytes) -> str:
        fd, local = tempfile.mkstemp(dir=self._tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return local

    def prefetch(self, files: dict[str, tuple[str, ...]]) -> None:
        """Read the listings of these directories and these small files in two debugfs runs instead of one
        per item. Only listings reached through real directories are ever used (see _listing)."""
        out = self._run([f"ls -p {_q(d)}" for d in files], allow=("",))
        section: str | None = None
        found: dict[str, list[str]] = {}
        for line in out.splitlines():
            if line.startswith("debugfs: ls -p "):
                section = line[len("debugfs: ls -p ") :].strip().strip('"')
                found[section] = []
            elif section is not None:
                found[section].append(line)
        for directory, lines in found.items():
            entries = self._parse_listing(directory, lines)
            if "." in entries:
                self._dirs.setdefault(directory, entries)
        wanted = []
        for directory, names in files.items():
            for name in names:
                st = self._lstat(posixpath.join(directory, name)) if self._trusted(directory) else None
                if st is not None and st.kind == "file" and st.size <= 1 << 20:
                    wanted.append(self._ino(posixpath.join(directory, name)))
        if wanted:
            self._run(
                [f"dump <{ino}> {_q(os.path.join(self._tmp, f'pre-{ino}'))}" for ino in wanted], allow=("",)
            )
            for ino in wanted:
                local = os.path.join(self._tmp, f"pre-{ino}")
                if os.path.exists(local):
                    with open(local, "rb") as f:
                        self._files[ino] = f.read()
                    os.unlink(local)

    def _trusted(self, directory: str) -> bool:
        """Every component of ``directory`` is a real directory according to its parent's listing."""
        path = "/"
        for part in [p for p in directory.split("/") if p]:
            entry = self._dirs.get(path, {}).get(part)
            if entry is None or entry[1].kind != "dir":
                return False
            path = posixpath.join(path, part)
        return path in self._dirs

    # ---- running debugfs -----------------------------------------------------------------------------
    def _run(self, commands: list[str], *, write: bool = False, allow: tuple[str, ...] = ()) -> str:
        """Run commands in one debugfs; debugfs exits 0 even when a command fails, so stderr decides."""
        cmdfile = os.path.join(self._tmp, "commands")
        with open(cmdfile, "w", encoding="utf-8") as f:
            f.write("\n".join(commands) + "\n")
        argv = ["debugfs", *(["-w"] if write else []), "-f", cmdfile, self.spec]
        result = process.run(argv)
        self.calls += 1
        errors = [
            ln
            for ln in result.stderr.splitlines()
            if ln.strip() and not _BANNER.match(ln) and not any(a in ln for a in allow)
        ]
        if errors:
            raise FilesystemError(f"debugfs: {errors[0].strip()}")
        return result.stdout

    def _parse_listing(self, path: str, lines: list[str]) -> dict[str, tuple[int, Stat]]:
        entries: dict[str, tuple[int, Stat]] = {}
        for line in lines:
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
                Stat(kind_of(mode), stat.S_IMODE(mode), int(uid), int(gid), int(size or 0)),
            )
        return entries

    def _listing(self, path: str) -> dict[str, tuple[int, Stat]]:
        # Callers pass canonical paths (every component a real directory), so a listing prefetched by
        # path names the same directory; a prefetched listing behind a symlink is never asked for.
        if path not in self._dirs:
            self.flush()
            self._dirs[path] = self._parse_listing(path, self._run([f"ls -p {_q(path)}"]).splitlines())
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
        if entry is not None and entry[0] < 0:  # made by a queued write: run it, then list to learn the inode
            self.flush()
            self._forget(path)
            entry = self._entry(path)
        if entry is None:
            raise GuestPathError(f"{path} does not exist in the guest")
        return entry[0]

    def _readlink(self, path: str) -> str:
        self.flush()
        ino = self._ino(path)
        out = self._run([f"stat <{ino}>"])
        for line in out.splitlines():
            if "Fast link dest:" in line:
                return line.split('"', 1)[1].rsplit('"', 1)[0]
        return self._dump(ino).decode("utf-8", "surrogateescape")

    def _dump(self, ino: int) -> bytes:
        self.flush()
        local = os.path.join(self._tmp, f"dump-{ino}")
        try:
            self._run([f"dump <{ino}> {_q(local)}"])
            with open(local, "rb") as f:
                return f.read()
        finally:
            if os.path.exists(local):
                os.unlink(local)

    def _read(self, path: str) -> bytes:
        ino = self._ino(path)
        return self._files[ino] if ino in self._files else self._dump(ino)

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
        return [f"ea_set -f {_q(self._local(label))} {name} {SELINUX_XATTR}"]

    def _write(self, path: str, data: bytes, mode: int, uid: int, gid: int, label: bytes | None) -> None:
        parent, base = posixpath.split(path)
        name = _q(base)
        commands = [f"cd {_q(parent)}"]
        old = self._entry(path)
        if old is not None:
            commands.append(f"rm {name}")
            self._files.pop(old[0], None)
        # debugfs `write` copies the host file's owner and mode: set them right after.
        commands += [
            f"write {_q(self._local(data))} {name}",
            *self._attr_commands(name, "file", mode, uid, gid),
        ]
        commands += self._label_commands(name, label)
        self._queue(commands, path, Stat("file", mode, uid, gid, len(data)))

    def _check_written(self, path: str, kind: str, size: int | None) -> None:
        st = self._lstat(path)
        if st is None or st.kind != kind or (size is not None and st.size != size):
            raise FilesystemError(f"debugfs did not create {path} as expected")

    def _mkdir(self, path: str, mode: int, uid: int, gid: int, label: bytes | None) -> None:
        parent, base = posixpath.split(path)
        name = _q(base)
        commands = [f"cd {_q(parent)}", f"mkdir {name}", *self._attr_commands(name, "dir", mode, uid, gid)]
        commands += self._label_commands(name, label)
        self._queue(commands, path, Stat("dir", mode, uid, gid, 0))

    def _set_attrs(self, path: str, mode: int, uid: int, gid: int) -> None:
        st = self._lstat(path)
        if st is None or st.kind not in _TYPE_BITS:  # never `sif mode` a symlink: it corrupts the fs
            raise GuestPathError(f"refusing to change {path}: not a regular file or directory")
        ino = self._ino(path)
        after = Stat(st.kind, mode, uid, gid, st.size)
        self._queue(self._attr_commands(f"<{ino}>", st.kind, mode, uid, gid), path, after, new_inode=False)

    def _unlink(self, path: str) -> None:
        parent, base = posixpath.split(path)
        old = self._entry(path)
        if old is not None:
            self._files.pop(old[0], None)
        self._queue([f"cd {_q(parent)}", f"rm {_q(base)}"], path, None)

    def _get_label(self, path: str) -> bytes | None:
        self.flush()
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
