"""InjectSSHKeys: authorized_keys for USERS with the right owner, modes and SELinux label."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from customization.params import InstanceParams
from customization.report import Status
from tests.customization import verify
from tests.customization.conftest import MakeImage
from tests.customization.runner import run, status


@pytest.mark.parametrize("fs", ["ext4", "btrfs"])
def test_keys_for_root_and_user(make_image: MakeImage, ssh_keypair: tuple[Path, str], fs: str) -> None:
    info = make_image(fs=fs, table="mbr")
    key = ssh_keypair[1]
    report = run(info, InstanceParams(ssh_keys=(key,)), ["InjectSSHKeys"], {"USERS": "root user"})
    assert status(report, "InjectSSHKeys") is Status.RAN
    with verify.guest_root(Path(info.path), 1, fs) as root:
        for home, uid in (("root", 0), ("home/user", 1000)):
            d, f = os.stat(root / home / ".ssh"), os.stat(root / home / ".ssh/authorized_keys")
            assert (d.st_mode & 0o7777, d.st_uid, d.st_gid) == (0o700, uid, uid)
            assert (f.st_mode & 0o7777, f.st_uid, f.st_gid) == (0o600, uid, uid)
            assert (root / home / ".ssh/authorized_keys").read_text() == key + "\n"
    again = run(info, InstanceParams(ssh_keys=(key,)), ["InjectSSHKeys"], {"USERS": "root user"})
    assert status(again, "InjectSSHKeys") is Status.UNCHANGED


def test_existing_keys_are_kept(make_image: MakeImage, ssh_keypair: tuple[Path, str]) -> None:
    def hook(tree: Path) -> None:
        (tree / "root/.ssh").mkdir(mode=0o755)
        (tree / "root/.ssh/authorized_keys").write_text("ssh-ed25519 AAAAold old@key")

    info = make_image(hook=hook)
    run(info, InstanceParams(ssh_keys=(ssh_keypair[1],)), ["InjectSSHKeys"])
    with verify.guest_root(Path(info.path), 1, "ext4") as root:
        text = (root / "root/.ssh/authorized_keys").read_text()
        assert (root / "root/.ssh").stat().st_mode & 0o777 == 0o700
    assert text == f"ssh-ed25519 AAAAold old@key\n{ssh_keypair[1]}\n"


def test_authorized_keys_file_setting_is_honoured(
    make_image: MakeImage, ssh_keypair: tuple[Path, str]
) -> None:
    def hook(tree: Path) -> None:
        (tree / "etc/ssh/sshd_config").write_text("AuthorizedKeysFile .ssh/keys2 .ssh/authorized_keys\n")

    info = make_image(hook=hook)
    run(info, InstanceParams(ssh_keys=(ssh_keypair[1],)), ["InjectSSHKeys"])
    with verify.guest_root(Path(info.path), 1, "ext4") as root:
        assert (root / "root/.ssh/keys2").read_text() == ssh_keypair[1] + "\n"


@pytest.mark.parametrize("backend", ["debugfs", "mount"])
def test_selinux_guest_gets_ssh_home_labels(
    make_image: MakeImage, ssh_keypair: tuple[Path, str], backend: str
) -> None:
    def hook(tree: Path) -> None:
        (tree / "etc/selinux").mkdir()
        (tree / "etc/selinux/config").write_text("SELINUX=enforcing\nSELINUXTYPE=targeted\n")

    info = make_image(hook=hook)
    run(info, InstanceParams(ssh_keys=(ssh_keypair[1],)), ["InjectSSHKeys"], backend=backend)
    with verify.guest_root(Path(info.path), 1, "ext4") as root:
        for path in (root / "root/.ssh", root / "root/.ssh/authorized_keys"):
            assert os.getxattr(path, "security.selinux") == b"system_u:object_r:ssh_home_t:s0\x00"
