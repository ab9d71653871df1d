"""The verb server: Atoll imported once per node, one fork per Ganeti call.

A cold ``python -m provider.ganeti.extstorage create`` spends 0.3 to 0.4 s importing SQLAlchemy, the
services and the backends before it does anything, and ``gnt-instance add`` runs five such calls. This
server (started by the first shim that finds none, see provider.ganeti.relay) imports all of that once,
listens on a unix socket only root can use, and forks a child per call: the child takes the caller's stdin,
stdout, stderr, environment, working directory and umask, runs the verb's ``main`` exactly as the shim
would, and reports the exit status. Nothing of one call survives into the next: every call is a fresh
fork of the same pristine parent, which never opens the configuration, the catalog or a store.

It declines (the shim then runs the call itself) when any imported source file changed since it started
(an upgrade: it exits so the next call starts a fresh one), when the host was renamed, or when the
request is not for the modules it serves or comes from other namespaces; it exits when idle (5 minutes),
when its socket is removed, and on SIGTERM, each time after the calls it runs have ended.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from customization import hostkeys
from provider import backends
from provider.ganeti import relay

LOG = logging.getLogger(__name__)
SERVED = ("provider.ganeti.extstorage", "provider.ganeti.osdef", "provider.ganeti.hooks")
# What the verbs import on their full path: loaded before the first fork, shared by every child.
PRELOAD = (*SERVED, "provider.services", "customization.engine", "provider.ganeti.fast")
# What they import on some stores only (rbd, a PostgreSQL catalog), where it is installed.
PRELOAD_OPTIONAL = (
    *("provider.backends.rbd", "provider.datapath.rbd", "provider.datapath.ceph"),
    *("psycopg", "sqlalchemy.dialects.postgresql"),
)
IDLE_SECONDS = 300.0
NAMESPACES = relay.namespaces()  # the server's, and so its children's: callers must share them
TICK_SECONDS = 5.0
FD_FLOOR = 1024  # where a child keeps its own descriptors while it takes on the caller's numbers
HOSTKEYS = 4  # RSA host keys kept ready for the OS create's customization (see customization.hostkeys)


@dataclass
class Request:
    key: str
    namespaces: str
    module: str
    cwd: bytes
    umask: int
    argv: list[str]
    env: dict[bytes, bytes]
    fds: dict[int, int] = field(default_factory=dict)  # caller's number -> received descriptor


def decode(payload: bytes, received: list[int]) -> Request:
    fields = payload.split(b"\0")
    version, key, ns, module, cwd, umask, sent, argc = fields[:8]
    if version != relay.VERSION:
        raise ValueError(f"unknown request version {version!r}")
    n = int(argc)
    argv = [os.fsdecode(a) for a in fields[8 : 8 + n]]
    env = dict(item.split(b"=", 1) for item in fields[8 + n :] if b"=" in item)
    wanted = [int(number) for number in sent.decode().split(",") if number]
    if len(wanted) != len(received):
        raise ValueError("descriptor count does not match the request")
    fds = dict(zip(wanted, received, strict=True))
    return Request(key.decode(), ns.decode(), module.decode(), cwd, int(umask, 8), argv, env, fds)


def receive(conn: socket.socket) -> Request:
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, relay.MAX_FDS)
    try:
        length = int(data[:8], 16)
        payload = data[8:]
        while len(payload) < length:
            chunk = conn.recv(length - len(payload))
            if not chunk:
                raise ValueError("request cut short")
            payload += chunk
        return decode(payload[:length], fds)
    except Exception:
        for fd in fds:
            os.close(fd)
        raise


def _stamp(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def code_files() -> dict[str, tuple[int, int]]:
    """Every source file imported so far, with its mtime and size: an upgrade changes one of them."""
    seen = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path:
            with contextlib.suppress(OSError):
                seen[path] = _stamp(path)
    return seen


def unchanged(files: dict[str, tuple[int, int]]) -> bool:
    try:
        return all(_stamp(path) == stamp for path, stamp in files.items())
    except OSError:
        return False  # removed


def _descriptors(request: Request, conn: socket.socket) -> socket.socket:
    """Give the caller's descriptors the numbers they had in the caller (/dev/null for a missing 0, 1
    or 2); the connection moves out of their way. Returns the connection."""
    moved = socket.socket(fileno=fcntl.fcntl(conn.fileno(), fcntl.F_DUPFD_CLOEXEC, FD_FLOOR))
    conn.close()
    high = {}
    for number, fd in request.fds.items():
        high[number] = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FD_FLOOR)
        os.close(fd)
    null = os.open(os.devnull, os.O_RDWR)
    null = fcntl.fcntl(null, fcntl.F_DUPFD_CLOEXEC, FD_FLOOR) if null in high else null
    for number in {0, 1, 2} - set(high):
        os.dup2(null, number)
    for number, fd in high.items():
        os.dup2(fd, number)  # inheritable, as it was in the caller
        os.close(fd)
    if null not in (0, 1, 2):
        os.close(null)
    return moved


def _become(request: Request) -> None:
    """Take on the caller's environment, directory and umask (as if the shim had exec'd the verb)."""
    os.environb.clear()
    os.environb.update(request.env)
    try:
        os.chdir(request.cwd)
    except OSError:
        os.chdir("/")
    os.umask(request.umask)
    sys.argv = [request.module, *request.argv]


def _watch(conn: socket.socket) -> None:
    """End this call when its shim goes away (Ganeti killed it on a timeout), as the verb would have."""
    with contextlib.suppress(OSError):
        while conn.recv(1):
            pass
    os.kill(os.getpid(), signal.SIGTERM)


def run_call(conn: socket.socket, key: str) -> NoReturn:
    """In the forked child: serve one call and exit with its status (the server reports it), never
    returning into the server's code."""
    status = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        request = receive(conn)
        if hostkeys.reserve_fd() in request.fds:  # the caller's descriptor takes that number
            hostkeys.disown_reserve()
        if request.key != key or request.namespaces != NAMESPACES or request.module not in SERVED:
            conn.sendall(b"S")
            os._exit(0)
        conn = _descriptors(request, conn)
        _become(request)
        conn.sendall(b"A")
        threading.Thread(target=_watch, args=(conn,), daemon=True, name="atoll-caller").start()
        status = _call(request)
        atexit._run_exitfuncs()  # what the interpreter's exit would run (the verb's handlers)
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # the child must never unwind into the server loop
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        os._exit(status & 0xFF)


def _call(request: Request) -> int:
    try:
        return int(sys.modules[request.module].main(request.argv))
    except SystemExit as e:
        if isinstance(e.code, int) or e.code is None:
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1


class Server:
    """Accepts calls, forks one child per call, and tells each caller its child's exit status."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self.key = key
        self.calls: dict[int, socket.socket] = {}  # child pid -> its caller's connection
        self.lock_fd = -1
        self.sock: socket.socket | None = None
        self.inode: tuple[int, int] | None = None
        self.files: dict[str, tuple[int, int]] = {}
        self.host = socket.gethostname()
        self.stopping = False
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.reserve: hostkeys.Reserve | None = None

    def claim(self) -> bool:
        """Become the one server for this socket; False if another one is (or is becoming) it."""
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = directory.stat()
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            LOG.error("%s is not a private directory of this user: no verb server", directory)
            return False
        self.lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        sock.listen(64)
        st = self.path.stat()
        self.sock, self.inode = sock, (st.st_dev, st.st_ino)
        return True

    def preload(self) -> None:
        for name in PRELOAD:
            __import__(name)
        for name in PRELOAD_OPTIONAL:
            with contextlib.suppress(ImportError):
                __import__(name)
        backends.installed()  # the entry-point scan, once for every child
        self.files = code_files()

    def current(self) -> bool:
        """The code, the host name and the socket are still what this server started with."""
        try:
            st = self.path.stat()
        except OSError:
            return False
        same = (st.st_dev, st.st_ino) == self.inode and socket.gethostname() == self.host
        return same and unchanged(self.files)

    def reap(self) -> None:
        """Tell each caller whose child ended how it ended (``X<code>``; a negative code is a signal).
        Only the calls' children are waited for: the host key reserve waits for its own."""
        for pid in list(self.calls):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 1 << 8
            if done == 0:
                continue
            conn = self.calls.pop(pid)
            with conn, contextlib.suppress(OSError):
                conn.sendall(b"X%d\n" % os.waitstatus_to_exitcode(status))

    def serve(self, idle: float = IDLE_SECONDS) -> None:
        """Until idle, stale or asked to stop; when stale, the calls running are seen to their end."""
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        self.reserve = reserve = hostkeys.Reserve(self.path.parent, HOSTKEYS)
        reserve.poll()
        last = time.monotonic()
        while self.sock is not None or self.calls:
            listener = self.sock
            waiting = [self.wake_r] if listener is None else [self.wake_r, listener.fileno()]
            ready, _, _ = select.select(waiting, [], [], TICK_SECONDS)
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake_r, 512)
            self.reap()
            reserve.poll()
            if listener is None:
                continue
            if listener.fileno() in ready:
                last = time.monotonic()
                self.accept(listener)
            elif self.stopping or not self.current() or (not self.calls and time.monotonic() - last > idle):
                self.retire()

    def _stop(self, _signum: int, _frame: object) -> None:
        """SIGTERM: take no new call; the running ones finish and their callers get their status."""
        self.stopping = True

    def accept(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        if relay.peer_uid(conn) != os.geteuid():
            conn.close()
        elif not self.current():
            with conn:
                conn.sendall(b"S")
            self.retire()
        else:
            self.fork(listener, conn)

    def fork(self, listener: socket.socket, conn: socket.socket) -> None:
        pid = os.fork()
        if pid == 0:
            listener.close()
            os.close(self.lock_fd)
            os.close(self.wake_r)
            os.close(self.wake_w)
            if self.reserve is not None:
                self.reserve.forked()
            run_call(conn, self.key)
        self.calls[pid] = conn

    def retire(self) -> None:
        """Stop taking calls: the socket goes (if it is still ours), so the next caller starts a server."""
        with contextlib.suppress(OSError):
            st = self.path.stat()
            if (st.st_dev, st.st_ino) == self.inode:
                self.path.unlink()
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        self.retire()
        for conn in self.calls.values():
            conn.close()
        if self.reserve is not None:
            self.reserve.close()
        if self.lock_fd >= 0:
            os.close(self.lock_fd)


def main(argv: list[str] | None = None) -> None:
    """``python -m provider.ganeti.prefork SOCKET KEY`` (what relay.start_server runs)."""
    path, key = (sys.argv[1:] if argv is None else argv)[:2]
    server = Server(Path(path), key)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # until it serves (then: see Server._stop)
    if not server.claim():
        return
    try:
        server.preload()
        server.serve()
    finally:
        server.close()


if __name__ == "__main__":
    main()
