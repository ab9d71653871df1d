"""Boot a customized disk under QEMU (TCG) with the kernel from the image, then ssh in with paramiko."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko

BOOT_TIMEOUT = 300.0
SSH_TIMEOUT = 150.0


@dataclass
class Guest:
    console: Path
    port: int
    seconds_to_login: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def extract_kernel(image: Path, offset: int, workdir: Path) -> tuple[Path, Path]:
    """vmlinuz and initrd of the newest kernel in the image's /boot (debugfs: no root, no mount)."""
    spec = f"{image}?offset={offset}"
    listing = subprocess.run(
        ["debugfs", "-R", "ls -p /boot", spec], capture_output=True, text=True, check=True
    )
    versions = sorted(
        line.split("/")[5][len("vmlinuz-") :] for line in listing.stdout.splitlines() if "/vmlinuz-" in line
    )
    if not versions:
        raise AssertionError("no kernel in the image's /boot")
    kernel, initrd = workdir / "vmlinuz", workdir / "initrd"
    for src, dst in ((f"/boot/vmlinuz-{versions[-1]}", kernel), (f"/boot/initrd.img-{versions[-1]}", initrd)):
        subprocess.run(["debugfs", "-R", f"dump {src} {dst}", spec], capture_output=True, check=True)
        assert dst.stat().st_size > 0, src
    return kernel, initrd


@contextlib.contextmanager
def booted(image: Path, offset: int, partition: int, hostname: str) -> Iterator[Guest]:
    """Boot ``image`` and wait for ``HOSTNAME login:`` on the serial console; the VM is killed on exit."""
    with tempfile.TemporaryDirectory(prefix="atoll-boot-") as tmp:
        work = Path(tmp)
        kernel, initrd = extract_kernel(image, offset, work)
        console, pidfile, port = work / "console.log", work / "qemu.pid", _free_port()
        argv = [
            "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "2",
            "-display", "none", "-no-reboot", "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", f"root=/dev/vda{partition} rw console=ttyS0 panic=-1",
            "-drive", f"file={image},format=raw,if=virtio,cache=unsafe",
            "-nic", f"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-serial", f"file:{console}", "-pidfile", str(pidfile), "-daemonize",
        ]  # fmt: skip
        subprocess.run(argv, check=True, capture_output=True)
        pid = int(pidfile.read_text())
        started = time.monotonic()
        try:
            while b"%s login:" % hostname.encode() not in console.read_bytes():
                if time.monotonic() - started > BOOT_TIMEOUT:
                    raise AssertionError(f"no '{hostname} login:' on the console:\n{_tail(console)}")
                try:
                    os.kill(pid, 0)
                except ProcessLookupError as e:
                    raise AssertionError(f"QEMU exited during boot:\n{_tail(console)}") from e
                time.sleep(0.5)
            yield Guest(console, port, time.monotonic() - started)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def ssh(guest: Guest, private_key: Path, commands: str, stdin: bytes = b"") -> str:
    """Run a shell script as root over ssh (retrying until sshd answers) and return its stdout."""
    key = paramiko.Ed25519Key.from_private_key_file(str(private_key))
    deadline = time.monotonic() + SSH_TIMEOUT
    while True:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect("127.0.0.1", guest.port, "root", pkey=key, timeout=10, banner_timeout=30,
                           auth_timeout=30, allow_agent=False, look_for_keys=False)  # fmt: skip
            chan_in, chan_out, chan_err = client.exec_command(commands, timeout=120)
            chan_in.write(stdin)
            chan_in.channel.shutdown_write()
            out = chan_out.read().decode()
            status = chan_out.channel.recv_exit_status()
            if status != 0:
                raise AssertionError(f"guest script failed ({status}): {chan_err.read().decode()}")
            return out
        except (paramiko.SSHException, OSError) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"ssh to the guest failed: {e}\n{_tail(guest.console)}") from e
            time.sleep(2)
        finally:
            client.close()


def host_key(guest: Guest, kind: str = "ssh-ed25519") -> str:
    """The base64 host key of type ``kind`` that the guest's sshd offers."""
    transport = paramiko.Transport(("127.0.0.1", guest.port))
    try:
        transport.get_security_options().key_types = [kind]
        transport.start_client(timeout=30)
        return transport.get_remote_server_key().get_base64()
    finally:
        transport.close()
