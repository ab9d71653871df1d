"""The serial console of a Ganeti KVM instance (its unix socket), driven like a terminal: wait for the
login prompt, log in, run a command and read its output."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

CTRL_DIR = Path("/var/run/ganeti/kvm-hypervisor/ctrl")
BOOT_TIMEOUT = 1500.0  # TCG on a shared 2-core machine: ~10 min at a load average of 17


class Console:
    def __init__(self, instance: str, timeout: float = 120.0) -> None:
        self.path = CTRL_DIR / f"{instance}.serial"
        self.seen = b""
        deadline = time.monotonic() + timeout
        while True:  # QEMU makes the socket when it starts
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(self.path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise AssertionError(f"no serial console at {self.path}") from None
                time.sleep(1)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def expect(self, pattern: bytes, timeout: float, poke: bytes | None = None) -> re.Match[bytes]:
        """Read until ``pattern`` (a regex) shows up in what arrived since the last match; ``poke`` is
        sent every few seconds meanwhile (a newline brings a fresh login prompt)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        next_poke = time.monotonic()
        while True:
            match = regex.search(self.seen)
            if match:
                self.seen = self.seen[match.end() :]
                return match
            now = time.monotonic()
            if now > deadline:
                tail = self.seen[-1500:].decode(errors="replace")
                raise AssertionError(f"no {pattern!r} on {self.path} after {timeout:.0f} s:\n{tail}")
            if poke is not None and now >= next_poke:
                self.sock.sendall(poke)
                next_poke = now + 5
            self.sock.settimeout(1.0)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise AssertionError(f"the serial console {self.path} closed (QEMU stopped?)")
            self.seen += chunk

    def login(self, hostname: str, password: str) -> None:
        """Wait for ``<hostname> login:`` (proof of the customized host name), then log in as root."""
        self.expect(re.escape(hostname.encode()) + rb" login:", BOOT_TIMEOUT, poke=b"\r")
        self.sock.sendall(b"root\r")
        self.expect(rb"Password:", 60)
        self.sock.sendall(password.encode() + b"\r")
        self.expect(rb"# ", 120)
        self.sock.sendall(b"stty -echo; export PS1='# '\r")
        self.expect(rb"# ", 30)

    def run(self, command: str, timeout: float = 120.0) -> str:
        """Run ``command`` in the logged-in shell; its output between two markers."""
        self.sock.sendall(f"echo '<<'BEGIN; {command}; echo END'>>'\r".encode())
        match = self.expect(rb"(?s)<<BEGIN\s*(.*?)\s*END>>", timeout)
        return match.group(1).decode(errors="replace").replace("\r", "")
