"""A private libvirtd for tests: a child process in a mount namespace of its own, so its configuration,
state, logs and sockets live in a temporary directory and nothing on the host changes.

The namespace bind-mounts the temporary directories over /etc/libvirt, /run/libvirt, /var/lib/libvirt,
/var/cache/libvirt and /var/log/libvirt, and adds the ``libvirt-qemu`` account libvirt's QEMU driver looks
up at start (Debian's libvirt-daemon-system would create it) to private copies of /etc/passwd and
/etc/group. Mounts made on the host later (loop-mounted XFS stores) still reach it (slave propagation).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LIBVIRTD_CONF = """\
unix_sock_dir = "{sock}"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:{base}/libvirtd.log"
"""

# root QEMU, no cgroups (no systemd here), no private /dev, no security driver, logs to files.
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""

DIRS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "cache": "/var/cache/libvirt",
    "log": "/var/log/libvirt",
}


@dataclass
class Daemon:
    uri: str | None
    error: str
    base: Path


def _prepare(base: Path) -> Path:
    for name in DIRS:
        (base / name).mkdir(parents=True, exist_ok=True)
    sock = base / "sock"
    sock.mkdir(exist_ok=True)
    (base / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF.format(sock=sock, base=base))
    (base / "etc" / "qemu.conf").write_text(QEMU_CONF)
    passwd = Path("/etc/passwd").read_text()
    group = Path("/etc/group").read_text()
    if "\nlibvirt-qemu:" not in "\n" + passwd:
        passwd += "libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin\n"
    if "\nlibvirt-qemu:" not in "\n" + group:
        group += "libvirt-qemu:x:64055:\n"
    (base / "passwd").write_text(passwd)
    (base / "group").write_text(group)
    lines = ["set -e"]
    for name, target in DIRS.items():
        lines += [f"mkdir -p {target}", f"mount --bind {base / name} {target}"]
    lines += [
        f"mount --bind {base / 'passwd'} /etc/passwd",
        f"mount --bind {base / 'group'} /etc/group",
        f"exec libvirtd --config /etc/libvirt/libvirtd.conf --pid-file {base / 'libvirtd.pid'}",
    ]
    script = base / "start.sh"
    script.write_text("\n".join(lines) + "\n")
    return script


@contextlib.contextmanager
def running(base: Path, timeout: float = 60.0) -> Iterator[Daemon]:
    """Start libvirtd, yield its URI once it answers, stop it (and its guests) at the end."""
    script = _prepare(base)
    log = open(base / "libvirtd.out", "wb")  # noqa: SIM115 - closed below, after the daemon is gone
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "slave", "sh", str(script)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    sock = base / "sock" / "libvirt-sock"
    uri = f"qemu:///system?socket={sock}"
    try:
        daemon = Daemon(None, "", base)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if sock.exists() and _answers(uri):
                daemon.uri = uri
                break
            time.sleep(0.1)
        if daemon.uri is None:
            daemon.error = (base / "libvirtd.out").read_text(errors="replace")[-2000:]
        yield daemon
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _answers(uri: str) -> bool:
    result = subprocess.run(
        ["virsh", "-c", uri, "version"], capture_output=True, env={**os.environ, "LANG": "C"}, check=False
    )
    return result.returncode == 0


def destroy_domains(uri: str) -> None:
    """Stop and forget every domain (libvirtd leaves guests running when it stops)."""
    listed = subprocess.run(["virsh", "-c", uri, "list", "--all", "--name"], capture_output=True, text=True)
    for name in filter(None, (n.strip() for n in listed.stdout.splitlines())):
        subprocess.run(["virsh", "-c", uri, "destroy", name], capture_output=True, check=False)
        subprocess.run(["virsh", "-c", uri, "undefine", name], capture_output=True, check=False)


def domain_log(uri: str, name: str) -> Path:
    """The log file of domain ``name`` of the libvirtd at ``uri`` (QEMU's stdout and stderr go there)."""
    sock = Path(uri.partition("socket=")[2])
    return sock.parent.parent / "log" / "qemu" / f"{name}.log"
