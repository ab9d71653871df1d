"""The shim's side of the verb server: hand one Ganeti call to ``provider.ganeti.prefork``, or run it here.

A script Ganeti runs (ExtStorage verb, OS script, hook) starts a bare interpreter that imports only this
module (socket, os, sys: a few milliseconds), connects to the node's verb server for this installation
(and for its namespaces: a caller in another UTS or mount namespace gets its own server), and passes it
the call: argv, environment, working directory, umask, and every descriptor it inherited (stdin, stdout,
stderr and any other Ganeti passes by number) as file descriptors (SCM_RIGHTS). The server forks a child
that has Atoll, SQLAlchemy and the services imported already and runs the verb there, on those
descriptors; the shim waits for the exit status and exits with it. Ganeti sees the same process, output
and status as when the verb runs in the shim.

If there is no server (first call after boot, an idle exit, an upgrade of the code), the shim starts one
in the background for the next call and runs this call itself, exactly as without a server. Only root
uses a server (Ganeti runs its scripts as root); the socket is root's, mode 0600, and each end checks the
other's uid (SO_PEERCRED) before anything is passed.

Wire format (one request per connection): ``<8 hex digits: length><fields joined by NUL>`` with the
descriptors attached; fields are version, key, namespaces, module, cwd, umask, the caller's numbers of
the descriptors (comma-separated), argc, the arguments, then the environment as ``NAME=value``. Answers:
``S`` (not served: run it yourself), ``A`` (accepted: the verb runs), then ``X<status>\\n`` (negative:
the signal that killed it).
"""

from __future__ import annotations

import os
import socket
import sys
import zlib

VERSION = b"atoll-verbs-1"
SOCKET_DIR = "/run/atoll"
ACCEPT_TIMEOUT = 10.0
MAX_FDS = 250  # what one message can carry (SCM_MAX_FD is 253)
_UCRED = 12  # struct ucred: pid, uid, gid (three C ints)
NAMESPACES = (
    "mnt",
    "uts",
    "net",
    "pid",
    "ipc",
    "user",
    "cgroup",
    "time",
)


def namespaces() -> str:
    """This process's namespaces: a server serves only callers that share all of them (Ganeti may run
    in its own UTS namespace, where the host name that attachments are recorded under differs)."""
    found = []
    for kind in NAMESPACES:
        try:
            found.append(os.readlink(f"/proc/self/ns/{kind}"))
        except OSError:
            continue  # not on this kernel
    return " ".join(found)


def socket_path(key: str, directory: str = SOCKET_DIR, ns: str | None = None) -> str:
    """The server's socket for installation ``key`` and the namespaces ``ns`` (default: this process's)."""
    tag = zlib.crc32((namespaces() if ns is None else ns).encode())
    return f"{directory}/verbs-{key}-{tag:08x}.sock"


def peer_uid(sock: socket.socket) -> int:
    cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED)
    return int.from_bytes(cred[4:8], sys.byteorder)


def encode(key: str, ns: str, module: str, argv: list[str], fds: list[int]) -> bytes:
    """The request for this process's call (in namespaces ``ns``), whose descriptors ``fds`` go along
    (attached to it)."""
    env = [k + b"=" + v for k, v in os.environb.items()]
    try:
        cwd = os.getcwdb()
    except OSError:
        cwd = b"/"
    umask = os.umask(0o022)
    os.umask(umask)
    fields = [VERSION, key.encode(), ns.encode(), module.encode(), cwd, b"%o" % umask]
    fields += [",".join(map(str, fds)).encode(), b"%d" % len(argv)]
    payload = b"\0".join([*fields, *map(os.fsencode, argv), *env])
    return b"%08x" % len(payload) + payload


def inherited() -> list[int]:
    """The descriptors this process got from its caller: stdin, stdout, stderr and any other one Ganeti
    passes by number (the OS ``export`` script's EXP_SIZE_FD): the open ones without close-on-exec."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.get_inheritable(int(name)):
                fds.append(int(name))
        except OSError:
            continue  # the listing's own descriptor, closed by now
    return sorted(fds)


def _answer(sock: socket.socket) -> int | None:
    """The verb's exit status from the server, or None when it did not take the call."""
    reader = sock.makefile("rb")
    first = reader.read(1)
    if first != b"A":
        return None  # S, or the server went away before accepting: nothing ran
    try:  # accepted: the verb runs, and takes as long as it takes; it must not be run again here
        sock.settimeout(None)
        line = reader.readline()
    except OSError:
        line = b""
    if line.startswith(b"X") and line[1:].strip().lstrip(b"-").isdigit():
        return int(line[1:])
    print("atoll: the verb's process ended without an exit status (killed?)", file=sys.stderr)
    return 1


def relay(path: str, key: str, ns: str, module: str, argv: list[str]) -> int | str:
    """Run the call on the server at ``path`` (for namespaces ``ns``): its exit status, or why it could
    not (``"absent"`` when no server listens there, so one should be started; ``"declined"`` otherwise)."""
    try:
        if os.stat(path).st_uid != os.geteuid():
            return "declined"
    except OSError:
        return "absent"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(ACCEPT_TIMEOUT)  # a stopped or stuck server: the shim runs the call itself
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return "absent"
    with sock:
        if peer_uid(sock) != os.geteuid():
            return "declined"
        fds = inherited()
        if len(fds) > MAX_FDS:
            return "declined"
        data = encode(key, ns, module, argv, fds)
        try:
            sent = socket.send_fds(sock, [data], fds)
            sock.sendall(data[sent:])
            status = _answer(sock)
        except OSError:
            return "declined"
    return "declined" if status is None else status


def start_server(path: str, key: str) -> None:
    """Start the server for the next call, detached (its own session, no descriptor of ours)."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 4096)
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        code = "from provider.ganeti.prefork import main; main()"
        os.execve(sys.executable, [sys.executable, "-S", "-P", "-c", code, path, key], env)
    finally:
        os._exit(127)


def _die(signum: int) -> int:
    """End as the verb ended: killed by ``signum`` (Ganeti tells a crash from a failure that way)."""
    import contextlib
    import signal

    with contextlib.suppress(OSError, ValueError):  # SIGKILL, SIGSTOP: their action is the default
        signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return 128 + signum  # a signal that cannot kill this process


def main(key: str, module: str, directory: str = SOCKET_DIR) -> int:
    """The shim's entry point: ``sys.argv[1:]`` is the call Ganeti made."""
    argv = sys.argv[1:]
    if os.geteuid() == 0:
        ns = namespaces()  # read once: it names the socket and goes in the request
        path = socket_path(key, directory, ns)
        status = relay(path, key, ns, module, argv)
        if isinstance(status, int):
            return status if status >= 0 else _die(-status)
        if status == "absent":
            start_server(path, key)
    entry = __import__(module, fromlist=["main"])
    return int(entry.main(argv))
