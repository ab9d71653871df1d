"""Root trees for test images: a tiny synthetic Debian-like tree, and cached debootstrap trees."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

LOG = logging.getLogger(__name__)
CACHE = Path(os.environ.get("ATOLL_TEST_CACHE", "/var/cache/atoll-tests"))
SUITE = "bookworm"
BOOT_PACKAGES = "systemd-sysv,udev,openssh-server,linux-image-cloud-amd64,iproute2,perl-base"
# Units a test guest does not need, masked: under TCG each costs a fraction of a second to a second of the
# boot (the tests wait for the serial console's login prompt; ssh and DHCP stay).
MASKED_UNITS = (
    *("systemd-timesyncd.service", "e2scrub_reap.service", "systemd-pstore.service"),
    *("getty-static.service", "getty@tty1.service"),  # the tests log in on the serial console
    *("systemd-update-utmp.service", "systemd-update-utmp-runlevel.service"),
    *("apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer"),
    *("e2scrub_all.timer", "fstrim.timer"),
)
ROOT_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
FAKE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-{0}-key\n-----END OPENSSH PRIVATE KEY-----\n"

PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
sshd:x:100:65534::/run/sshd:/usr/sbin/nologin
user:x:1000:1000:Test User,,,:/home/user:/bin/bash
"""
SHADOW = "".join(
    f"{user}:{pw}:19700:0:99999:7:::\n"
    for user, pw in (("root", "*"), ("daemon", "*"), ("sshd", "*"), ("user", "!"))
)
GROUP = "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nnogroup:x:65534:\nuser:x:1000:\n"
OS_RELEASE = (
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'
)


def _write(root: Path, rel: str, text: str, mode: int = 0o644, owner: tuple[int, int] = (0, 0)) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    os.lchown(path, *owner)


def synthetic(root: Path) -> Path:
    """A small Debian-like tree: accounts, host name files, fake SSH host keys, /root and /home/user."""
    for d in (
        "etc/ssh",
        "root",
        "home/user",
        "tmp",
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "var/lib/dbus",
        "boot",
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    for name in ("bin", "sbin", "lib"):
        (root / name).symlink_to(f"usr/{name}")
    _write(root, "etc/hostname", "template\n")
    _write(root, "etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\ttemplate\n\n::1\tlocalhost ip6-localhost\n")
    _write(root, "etc/passwd", PASSWD)
    _write(root, "etc/shadow", SHADOW, 0o640, (0, 42))
    _write(root, "etc/group", GROUP)
    _write(root, "etc/gshadow", "root:*::\nshadow:*::\nuser:!::\n", 0o640, (0, 42))
    _write(root, "etc/os-release", OS_RELEASE)
    _write(root, "etc/fstab", "LABEL=root / auto defaults 0 0\n")
    _write(root, "etc/machine-id", "0123456789abcdef0123456789abcdef\n", 0o444)
    (root / "var/lib/dbus/machine-id").symlink_to("/etc/machine-id")
    _write(root, "etc/motd", "synthetic test image\n")
    _write(root, "etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\n")
    for kind in ("rsa", "ecdsa", "ed25519"):
        _write(root, f"etc/ssh/ssh_host_{kind}_key", FAKE_KEY.format(kind), 0o600)
        _write(root, f"etc/ssh/ssh_host_{kind}_key.pub", f"ssh-{kind} AAAAfake{kind} root@template\n")
    _write(root, "root/.bashrc", "# root\n")
    _write(root, "home/user/.profile", "# user\n", 0o644, (1000, 1000))
    os.chmod(root / "root", 0o700)
    os.chmod(root / "tmp", 0o1777)
    os.lchown(root / "home/user", 1000, 1000)
    return root


def mirror() -> str:
    """The first Debian mirror in this machine's apt sources (debootstrap uses the same)."""
    pattern = re.compile(r"^(?:URIs:\s*|deb\s+)(\S+/debian)/?\s*$", re.M)
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]:
        if path.exists():
            for match in pattern.finditer(path.read_text()):
                return match.group(1)
    return "http://deb.debian.org/debian"


def _finish_tree(tree: Path, boot: bool) -> None:
    """Make a debootstrap tree image-like: debootstrap copies the host's hostname (with its mode) and
    resolv.conf."""
    _write(tree, "etc/hostname", "template\n")
    _write(tree, "etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\ttemplate\n")
    _write(tree, "etc/fstab", "LABEL=root / auto defaults 0 0\n")
    (tree / "etc/resolv.conf").unlink(missing_ok=True)
    if boot:
        _write(tree, "etc/systemd/network/80-dhcp.network", "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n")
        wants = tree / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / "systemd-networkd.service"
        if not link.exists():
            link.symlink_to("/lib/systemd/system/systemd-networkd.service")
        for unit in MASKED_UNITS:
            (tree / "etc/systemd/system" / unit).unlink(missing_ok=True)
            (tree / "etc/systemd/system" / unit).symlink_to("/dev/null")
        # A volatile journal: nothing to flush to disk at boot, nothing left in the image by a test boot.
        _write(tree, "etc/systemd/journald.conf.d/volatile.conf", "[Journal]\nStorage=volatile\n")
    for leftover in (tree / "var/cache/apt/archives").glob("*.deb"):
        leftover.unlink()
    for leftover in (tree / "var/lib/apt/lists").glob("*_Packages"):
        leftover.unlink()


def debootstrap(kind: str) -> Path:
    """A cached debootstrap tree: ``minbase`` (~30 s to build) or ``boot`` (+ kernel, sshd; ~100 s)."""
    if kind not in ("minbase", "boot"):
        raise ValueError(kind)
    tree = CACHE / f"rootfs-{kind}"
    if (tree / ".complete").exists():
        _finish_tree(tree, kind == "boot")  # idempotent: a tree cached by an older version catches up
        return tree
    if os.geteuid() != 0:
        raise PermissionError(f"debootstrap needs root (or a cached tree at {tree})")
    shutil.rmtree(tree, ignore_errors=True)
    tree.parent.mkdir(parents=True, exist_ok=True)
    argv = ["debootstrap", "--variant=minbase"]
    if kind == "boot":
        argv.append(f"--include={BOOT_PACKAGES}")
    started = time.monotonic()
    LOG.info("debootstrap %s into %s", kind, tree)
    subprocess.run([*argv, SUITE, str(tree), mirror()], check=True, stdout=subprocess.DEVNULL)
    _finish_tree(tree, kind == "boot")
    (tree / ".complete").write_text(f"{time.monotonic() - started:.0f} s\n")
    return tree
