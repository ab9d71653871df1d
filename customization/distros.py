"""Small Linux OS adapters: where a distribution keeps its host name, and whether it runs SELinux."""

from __future__ import annotations

import logging
import re
import shlex

from customization.guestfs.base import GuestFS

LOG = logging.getLogger(__name__)
_HOSTS_MARK = "127.0.1.1"


def os_release(guest: GuestFS) -> dict[str, str]:
    """/etc/os-release (or /usr/lib/os-release) as a dict; {} when neither exists."""
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        if guest.exists(path):
            out = {}
            for line in guest.read_text(path).splitlines():
                key, sep, value = line.partition("=")
                if sep and re.match(r"^[A-Z_][A-Z0-9_]*$", key.strip()):
                    try:
                        words = shlex.split(value)
                    except ValueError:
                        continue
                    out[key.strip()] = words[0] if words else ""
            return out
    return {}


class Linux:
    """The common case (systemd era): /etc/hostname plus a 127.0.1.1 line in /etc/hosts."""

    name = "linux"
    hostname_files: tuple[str, ...] = ("/etc/hostname",)

    def __init__(self, guest: GuestFS, release: dict[str, str]) -> None:
        self.guest = guest
        self.release = release
        self.selinux = self._selinux_enabled()

    def _selinux_enabled(self) -> bool:
        if not self.guest.exists("/etc/selinux/config"):
            return False
        for line in self.guest.read_text("/etc/selinux/config").splitlines():
            key, _, value = line.strip().partition("=")
            if key == "SELINUX":
                return value.strip().lower() in ("enforcing", "permissive")
        return False

    def write_hostname(self, hostname: str) -> bool:
        """Write the host name files (mode 0644, root); False when they already said so."""
        changed = False
        for path in self.hostname_files:
            new = f"{hostname}\n".encode()
            st = self.guest.lstat(path)
            if st is not None and st.kind == "file" and self.guest.read(path) == new and st.mode == 0o644:
                continue
            self.guest.write(path, new, mode=0o644, uid=0, gid=0)
            changed = True
        return changed

    def update_hosts(self, hostname: str) -> bool:
        """Point the 127.0.1.1 line of /etc/hosts at the new name (added when missing)."""
        path = "/etc/hosts"
        short = hostname.split(".")[0]
        names = hostname if short == hostname else f"{hostname} {short}"
        entry = f"{_HOSTS_MARK}\t{names}"
        text = self.guest.read_text(path) if self.guest.exists(path) else "127.0.0.1\tlocalhost\n"
        lines = text.splitlines()
        idx = next((i for i, ln in enumerate(lines) if ln.split()[:1] == [_HOSTS_MARK]), None)
        if idx is None:
            at = next((i + 1 for i, ln in enumerate(lines) if ln.split()[:1] == ["127.0.0.1"]), 0)
            lines.insert(at, entry)
        elif lines[idx] == entry:
            return False
        else:
            lines[idx] = entry
        self.guest.write(
            path, ("\n".join(lines) + "\n").encode(), mode=None if self.guest.lstat(path) else 0o644
        )
        return True


class Debian(Linux):
    name = "debian"


class RedHat(Linux):
    name = "redhat"

    def write_hostname(self, hostname: str) -> bool:
        changed = super().write_hostname(hostname)
        legacy = "/etc/sysconfig/network"  # pre-systemd releases read HOSTNAME= here
        st = self.guest.lstat(legacy)
        if st is not None and st.kind == "file":
            lines = self.guest.read_text(legacy).splitlines()
            new = [ln for ln in lines if not ln.startswith("HOSTNAME=")] + [f"HOSTNAME={hostname}"]
            if new != lines:
                self.guest.write(legacy, ("\n".join(new) + "\n").encode())
                changed = True
        return changed


class Suse(Linux):
    name = "suse"
    hostname_files = ("/etc/hostname", "/etc/HOSTNAME")


def detect(guest: GuestFS) -> Linux:
    """Pick the adapter from os-release ID and ID_LIKE."""
    release = os_release(guest)
    ids = {release.get("ID", "").lower(), *release.get("ID_LIKE", "").lower().split()}
    cls: type[Linux] = Linux
    if ids & {"debian", "ubuntu"}:
        cls = Debian
    elif ids & {"rhel", "fedora", "centos", "rocky", "almalinux"}:
        cls = RedHat
    elif ids & {"suse", "opensuse", "sles"}:
        cls = Suse
    adapter = cls(guest, release)
    guest.labels_enabled = adapter.selinux
    LOG.debug(
        "guest OS: %s (adapter %s, selinux %s)",
        release.get("PRETTY_NAME", "?"),
        adapter.name,
        adapter.selinux,
    )
    return adapter
