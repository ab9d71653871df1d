"""The verb server: Ganeti's calls, handed over by the shims, give what the call run in the shim gives.

Each case drives the installed scripts as Ganeti does (empty environment, cwd = the script directory)
and tells a served call from one run in the shim by the modules the shim imported (never by times): a
served call imports provider.ganeti.relay and nothing of the verbs, the ORM or the services.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from provider.catalog import schema as t
from provider.ganeti import fast, install, relay
from tests.conftest import make_store_env, write_disk
from tests.ganeti.conftest import Installed, add_image, last_line, make_installed, register_image
from tests.ganeti.test_fast_verbs import HEAVY, heavy, imported, without_importtime
from tests.ganeti.test_os_and_hooks import MIB, OS_ENV
from tests.helpers import need_root

VOL = "5a7c3e21-9d4b-4c1e-8f0a-2b6d9e8c7f10.ext.disk0"


def _key() -> str:
    path = install.import_path(sys.executable)
    assert path is not None
    return install.server_key(sys.executable, path)


def _processes(name: str) -> Iterator[tuple[int, bytes]]:
    """Each process's pid and its /proc file ``name`` (processes gone meanwhile are left out)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / name).read_bytes()
            except OSError:
                continue


def _servers(key: str, any_namespace: bool = False) -> list[int]:
    """Pids of the verb servers for ``key`` (their command line names the socket) in this process's
    namespaces, or in any."""
    wanted = f"/verbs-{key}-".encode() if any_namespace else relay.socket_path(key).encode()
    return [pid for pid, cmd in _processes("cmdline") if b"provider.ganeti.prefork" in cmd and wanted in cmd]


def _wait(condition, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def _served(installed: Installed, verb: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run ``verb`` and check that the server ran it: the shim imported none of the verb's code."""
    proc = installed.ext(verb, PYTHONPROFILEIMPORTTIME="1", **variables)
    modules = imported(proc.stderr)
    assert "provider.ganeti.relay" in modules, proc.stderr  # the measurement itself works
    assert heavy(modules, (*HEAVY, "provider.ganeti.extstorage", "provider.ganeti.fast")) == [], proc.stderr
    proc.stderr = without_importtime(proc.stderr)
    return proc


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Installed]:
    """Scripts installed with the verb server, and the server up (started by a first call)."""
    need_root()
    installed = make_installed(make_store_env("qcow2", tmp_path / "store", ""), tmp_path / "ganeti")
    key = _key()
    assert installed.ext("verify", VOL_NAME=VOL).returncode == 0  # run in the shim, or served already
    _wait(lambda: os.path.exists(relay.socket_path(key)) and _servers(key), "the verb server")
    yield installed


def test_served_calls_answer_as_in_the_shim(served: Installed, tmp_path: Path) -> None:
    image = add_image(served, tmp_path)
    created = _served(served, "create", VOL_NAME=VOL, VOL_SIZE="64", EXTP_ORIGIN=image)
    assert created.returncode == 0 and "created volume" in created.stderr, created.stderr
    attached = _served(served, "attach", VOL_NAME=VOL)
    assert attached.returncode == 0, attached.stderr
    device = attached.stdout.splitlines()[0]
    assert os.path.exists(device) and attached.stdout == served.ext("attach", VOL_NAME=VOL).stdout
    setinfo = _served(served, "setinfo", VOL_NAME=VOL, VOL_METADATA="originstname+web9")
    assert setinfo.returncode == 0
    vol = served.env.open().volumes.show(VOL)
    assert vol.volume is not None and vol.volume.ganeti["instance"] == "web9"
    failed = _served(served, "verify", VOL_NAME=VOL, EXTP_ORIGIN="nope")  # a failure, and its last line
    assert failed.returncode == 1
    assert last_line(failed.stderr) == "atoll verify: error: origin 'nope' not found"
    usage = _served(served, "verify", VOL_NAME=VOL, EXTP_ORIGIN=image, EXTP_ORIGN="typo")
    assert usage.returncode == 2 and "unknown disk parameter(s) orign" in last_line(usage.stderr)
    for verb in ("detach", "remove"):
        assert _served(served, verb, VOL_NAME=VOL).returncode == 0
    assert served.env.open().volumes.list() == []


def test_a_served_call_that_dies_ends_the_shim_the_same_way(served: Installed, tmp_path: Path) -> None:
    """Killed by a signal in the server's child: the shim dies by the same signal, not with a status."""
    image = add_image(served, tmp_path)
    assert served.ext("create", VOL_NAME=VOL, VOL_SIZE="64", EXTP_ORIGIN=image).returncode == 0
    died = _served(served, "attach", VOL_NAME=VOL, ATOLL_FAILPOINT="ganeti.attach.before-print")
    assert died.returncode == -9 and died.stdout == ""
    assert _served(served, "remove", VOL_NAME=VOL).returncode == 0


def test_changed_code_retires_the_server_and_calls_still_answer(served: Installed) -> None:
    """An upgrade (any imported source file changed): the call runs in the shim, the old server exits,
    and the next call starts a new one."""
    key = _key()
    (old,) = _servers(key)
    source = Path(fast.__file__)
    stamp = source.stat()
    os.utime(source, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000_000))
    try:
        proc = served.ext("verify", VOL_NAME=VOL, PYTHONPROFILEIMPORTTIME="1")
        assert proc.returncode == 0 and "provider.ganeti.fast" in imported(proc.stderr)  # ran in the shim
        _wait(lambda: old not in _servers(key), "the stale server to exit")
    finally:
        os.utime(source, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert served.ext("verify", VOL_NAME=VOL).returncode == 0
    _wait(lambda: _servers(key) not in ([], [old]), "a new server")


def test_only_the_servers_user_reaches_it(served: Installed) -> None:
    """Another user cannot connect (the socket is root's, mode 0600) and would be refused if it could."""
    path = relay.socket_path(_key())
    assert os.stat(path).st_mode & 0o777 == 0o600
    code = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({path!r})"
    nobody = subprocess.run(
        [sys.executable, "-c", code], user=65534, capture_output=True, text=True, check=False
    )
    assert nobody.returncode == 1 and "PermissionError" in nobody.stderr


def test_an_idle_server_exits_and_gives_its_socket_up(tmp_path: Path) -> None:
    need_root()
    path = tmp_path / "run" / "verbs-test.sock"
    code = (
        "import sys; from pathlib import Path; from provider.ganeti.prefork import Server\n"
        f"s = Server(Path({str(path)!r}), 'test')\n"
        "assert s.claim(); print('up', flush=True); s.serve(idle=0.5); s.close()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    assert path.is_socket() and (path.parent.stat().st_mode & 0o777) == 0o700
    assert proc.wait(timeout=60) == 0
    assert not path.exists()


def test_a_caller_in_another_uts_namespace_is_not_served_by_this_ones_server(
    served: Installed, tmp_path: Path
) -> None:
    """Ganeti may run in its own UTS namespace (the node's name): attachments are recorded under the
    caller's host name, never under the name of the namespace a server happens to run in."""
    image = add_image(served, tmp_path)
    assert served.ext("create", VOL_NAME=VOL, VOL_SIZE="64", EXTP_ORIGIN=image).returncode == 0
    key = _key()
    before = _servers(key, any_namespace=True)
    try:
        proc = _on_another_node(served, "attach")
        assert proc.returncode == 0, proc.stderr
        store = served.env.open()
        with store.catalog.read() as conn:
            hosts = [row.host for row in conn.execute(select(t.attachments.c.host))]
        assert hosts == ["atoll-other-node"]
        proc = _on_another_node(served, "remove")
        assert proc.returncode == 0, proc.stderr
    finally:
        for pid in set(_servers(key, any_namespace=True)) - set(before):  # the new namespaces' servers
            os.kill(pid, signal.SIGTERM)


def _on_another_node(installed: Installed, verb: str) -> subprocess.CompletedProcess[str]:
    """Run ``verb`` in a new UTS namespace whose host name is atoll-other-node."""
    return subprocess.run(
        [
            "unshare",
            "--uts",
            "sh",
            "-c",
            'hostname atoll-other-node && exec "$0"',
            str(installed.extstorage / verb),
        ],
        env={"VOL_NAME": VOL},
        cwd=installed.extstorage,
        capture_output=True,
        text=True,
        check=False,
    )


def test_served_export_gets_ganetis_descriptors_by_number(served: Installed, tmp_path: Path) -> None:
    """Ganeti hands the OS export script the size pipe as EXP_SIZE_FD (a descriptor number) and the
    data on stdout, the import its data on stdin: served, each keeps its number and its content."""
    src, dst = write_disk(tmp_path / "src", 8 * MIB), tmp_path / "dst"
    dst.write_bytes(bytes(8 * MIB))
    read_size, write_size = os.pipe()
    target = fcntl.fcntl(write_size, fcntl.F_DUPFD, 37)  # a free number, not one of the first few
    os.close(write_size)
    env = {**OS_ENV, "EXPORT_INDEX": "0", "EXPORT_DISK_PATH": str(src), "EXP_SIZE_FD": str(target)}
    export = subprocess.run(
        [str(served.os / "export")],
        env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
        cwd=served.os,
        capture_output=True,
        pass_fds=(target,),
        check=False,
    )
    os.close(target)
    stderr = export.stderr.decode()
    assert export.returncode == 0, stderr
    assert heavy(imported(stderr), ("provider.ganeti.osdef", *HEAVY)) == []  # served
    size = os.read(read_size, 100)
    os.close(read_size)
    assert size == f"{8 * MIB}\n".encode() and export.stdout == src.read_bytes()
    proc = subprocess.run(
        [str(served.os / "import")],
        env={**OS_ENV, "IMPORT_INDEX": "0", "IMPORT_DEVICE": str(dst), "PYTHONPROFILEIMPORTTIME": "1"},
        cwd=served.os,
        input=export.stdout,
        capture_output=True,
        check=False,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 0 and dst.read_bytes() == src.read_bytes(), stderr
    assert heavy(imported(stderr), ("provider.ganeti.osdef", *HEAVY)) == []  # served


def _children(pid: int) -> list[str]:
    """The command names of ``pid``'s child processes."""
    found = []
    for _child, stat in _processes("stat"):
        name, rest = stat[stat.index(b"(") + 1 : stat.rindex(b")")], stat[stat.rindex(b")") + 2 :].split()
        if int(rest[1]) == pid:
            found.append(name.decode())
    return found


def test_served_os_create_takes_a_host_key_the_server_made_ahead(
    served: Installed, guest_image: Path
) -> None:
    """The server keeps RSA host keys ready (ssh-keygen, niced, in its private directory, then only in
    a pipe): a served OS create takes one, and the server makes the next while nobody waits for it."""
    key = _key()
    (server,) = _servers(key)
    directory = Path(relay.socket_path(key)).parent
    quiet_since = [time.monotonic()]

    def full() -> bool:  # no ssh-keygen running for a second: every slot holds a key
        if _children(server) or list(directory.glob("hostkey-*")):
            quiet_since[0] = time.monotonic()
        return time.monotonic() - quiet_since[0] > 1.0

    _wait(full, "the host key reserve to fill", timeout=120)
    store = served.env.open()
    register_image(served.env, guest_image, "guest")
    vol = store.volumes.create("vol-of-vm1", source="guest")
    store.volumes.set_ganeti(vol.id, {"VOL_UUID": "u-1"})
    device = store.volumes.attach(vol.id).device
    assert device is not None
    env = {**OS_ENV, "INSTANCE_NAME": "vm1", "DISK_COUNT": "1", "DISK_0_UUID": "u-1", "OSP_HOSTNAME": "vm1"}
    try:
        created = served.run(served.os, "create", **env, DISK_0_PATH=device, PYTHONPROFILEIMPORTTIME="1")
        assert created.returncode == 0, created.stderr
        assert heavy(imported(created.stderr), ("provider.ganeti.osdef", *HEAVY)) == []  # served
        _wait(lambda: "ssh-keygen" in _children(server), "the server to replace the key it gave", 30)
        _wait(full, "the reserve to fill again", timeout=120)
        assert _servers(key) == [server]  # the same server, still serving
        assert served.ext("verify", VOL_NAME=VOL).returncode == 0
    finally:
        store.volumes.detach(vol.id)
