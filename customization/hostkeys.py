"""SSH host key pairs from ssh-keygen, and a reserve of RSA keys made ahead of time.

An RSA 3072 key takes ssh-keygen 0.3 to 0.7 s of one core (a random search for primes), longer than all
the rest of a fresh clone's customization; ECDSA and Ed25519 keys take milliseconds. A long-lived process
that forks the customizations (the Ganeti verb server) keeps a :class:`Reserve`: RSA keys made while the
node is otherwise idle, each one read into a pipe right after ssh-keygen wrote it into a private directory
(which is then removed), so that it exists only in kernel memory until a customization takes it. A forked
child takes one with :func:`take_rsa`: one read of one record, which the kernel gives to exactly one
reader, so no key is ever handed out twice; the pipe is close-on-exec, so no program the customization
runs inherits it. With no reserve, or an empty one, keys are made on the spot as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import struct
import subprocess
import tempfile
import termios
from pathlib import Path

from atoll_common import process

LOG = logging.getLogger(__name__)
DEFAULT_TYPES = ("rsa", "ecdsa", "ed25519")  # what `ssh-keygen -A` makes
BITS = {"rsa": "3072", "ecdsa": "256", "dsa": "1024"}
RECORD = 4096  # one key per record: PIPE_BUF bytes, so that a write and a read move a record whole
_HEADER = struct.Struct("!4sHH")  # magic, length of the private key, length of the public key
_MAGIC = b"AHK1"

# The reserve's read end in this process (inherited by forked children); None: there is no reserve.
_reserve_fd: int | None = None


def keygen_argv(kind: str, comment: str, path: str) -> list[str]:
    """ssh-keygen's command line for a new unencrypted key pair of type ``kind`` at ``path``."""
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", path]
    if kind in BITS:
        argv[4:4] = ["-b", BITS[kind]]
    return argv


def encode(private: bytes, public: bytes) -> bytes:
    record = _HEADER.pack(_MAGIC, len(private), len(public)) + private + public
    if len(record) > RECORD:
        raise ValueError("the key pair does not fit in one record")
    return record.ljust(RECORD, b"\0")


def decode(record: bytes) -> tuple[bytes, bytes] | None:
    """``(private, public)`` from a whole record, or None for anything else."""
    if len(record) != RECORD:
        return None
    magic, n_private, n_public = _HEADER.unpack_from(record)
    if magic != _MAGIC or _HEADER.size + n_private + n_public > RECORD:
        return None
    start = _HEADER.size
    return record[start : start + n_private], record[start + n_private : start + n_private + n_public]


def take_rsa() -> tuple[bytes, bytes] | None:
    """An RSA key pair from this process's reserve (its comment is empty), or None."""
    fd = _reserve_fd
    if fd is None:
        return None
    try:
        return decode(os.read(fd, RECORD))
    except OSError:  # empty (EAGAIN), or the descriptor is not the reserve any more
        return None


def reserve_fd() -> int | None:
    """The reserve's read end in this process, if it has one."""
    return _reserve_fd


def disown_reserve() -> None:
    """Forget the reserve (a forked child whose descriptor number now holds something else)."""
    global _reserve_fd
    _reserve_fd = None


class Reserve:
    """Up to ``size`` RSA keys, made one at a time by ssh-keygen in a private directory under ``parent``.

    The owner calls :meth:`poll` from its loop (at least when a child exits: SIGCHLD) and :meth:`close`
    when it stops; children it forks afterwards take keys with :func:`take_rsa`.
    """

    def __init__(self, parent: Path, size: int = 1) -> None:
        global _reserve_fd
        self.parent, self.size = parent, size
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.making: tuple[subprocess.Popen[bytes], str] | None = None
        self.failed = False
        _reserve_fd = self.read_fd

    def ready(self) -> int:
        """How many keys wait in the pipe."""
        buf = fcntl.ioctl(self.read_fd, termios.FIONREAD, b"\0\0\0\0")
        return int.from_bytes(buf, "little") // RECORD

    def poll(self) -> None:
        """Store the key ssh-keygen finished; start the next one while the reserve is short."""
        if self.making is not None:
            proc, workdir = self.making
            if proc.poll() is None:
                return
            proc.communicate()  # closes its pipes
            self.making = None
            try:
                self._store(proc.returncode, workdir)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        if not self.failed and self.ready() < self.size:
            self._start()

    def _start(self) -> None:
        """ssh-keygen at the lowest priority: a call running meanwhile keeps the CPU it would have had."""
        workdir = tempfile.mkdtemp(prefix="hostkey-", dir=self.parent)
        try:
            argv = ["nice", "-n", "19", *keygen_argv("rsa", "", os.path.join(workdir, "key"))]
            self.making = process.start(argv), workdir
        except process.ToolMissing as e:
            shutil.rmtree(workdir, ignore_errors=True)
            self._disable(e)

    def _store(self, code: int | None, workdir: str) -> None:
        path = os.path.join(workdir, "key")
        try:
            if code != 0:
                raise OSError(f"ssh-keygen exited with code {code}")
            with open(path, "rb") as private, open(path + ".pub", "rb") as public:
                os.write(self.write_fd, encode(private.read(), public.read()))
        except (OSError, ValueError) as e:
            self._disable(e)

    def _disable(self, reason: Exception) -> None:
        self.failed = True  # no retry loop: the customizations make their own keys
        LOG.warning("host key reserve disabled: %s", reason)

    def forked(self) -> None:
        """In a child the owner forked: it may take keys, never add any."""
        with contextlib.suppress(OSError):
            os.close(self.write_fd)

    def close(self) -> None:
        global _reserve_fd
        if self.making is not None:
            proc, workdir = self.making
            process.stop([proc])
            shutil.rmtree(workdir, ignore_errors=True)
            self.making = None
        if _reserve_fd == self.read_fd:
            _reserve_fd = None
        for fd in (self.read_fd, self.write_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.read_fd = self.write_fd = -1  # a second close must not close numbers reused since
