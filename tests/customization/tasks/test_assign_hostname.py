"""AssignHostname: /etc/hostname (0644 root) and the 127.0.1.1 line of /etc/hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from customization.params import InstanceParams
from customization.report import Status
from tests.customization import verify
from tests.customization.conftest import MakeImage
from tests.customization.runner import run, status


@pytest.mark.parametrize("fs", ["ext4", "xfs"])
def test_hostname_and_hosts(make_image: MakeImage, fs: str) -> None:
    info = make_image(fs=fs)
    report = run(info, InstanceParams(hostname="web1.example.org"), ["AssignHostname"])
    assert status(report, "AssignHostname") is Status.RAN
    with verify.guest_root(Path(info.path), info.root_partition, fs) as root:
        st = (root / "etc/hostname").stat()
        assert (root / "etc/hostname").read_text() == "web1.example.org\n"
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o644, 0, 0)
        hosts = (root / "etc/hosts").read_text().splitlines()
    assert "127.0.1.1\tweb1.example.org web1" in hosts
    assert "127.0.0.1\tlocalhost" in hosts
    assert not any("template" in line for line in hosts)
    verify.assert_fs_clean(Path(info.path), info.root_partition, fs)


def test_mode_of_a_0755_hostname_is_fixed_and_rerun_is_unchanged(make_image: MakeImage) -> None:
    def hook(tree: Path) -> None:
        (tree / "etc/hostname").chmod(0o755)  # what debootstrap copies from some hosts

    info = make_image(hook=hook)
    run(info, InstanceParams(hostname="vm2"), ["AssignHostname"])
    with verify.guest_root(Path(info.path), 1, "ext4") as root:
        assert (root / "etc/hostname").stat().st_mode & 0o7777 == 0o644
    again = run(info, InstanceParams(hostname="vm2"), ["AssignHostname"])
    assert status(again, "AssignHostname") is Status.UNCHANGED


def test_hosts_line_is_added_when_missing(make_image: MakeImage) -> None:
    def hook(tree: Path) -> None:
        (tree / "etc/hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")

    info = make_image(hook=hook)
    run(info, InstanceParams(hostname="vm3"), ["AssignHostname"])
    with verify.guest_root(Path(info.path), 1, "ext4") as root:
        assert (root / "etc/hosts").read_text() == "127.0.0.1 localhost\n127.0.1.1\tvm3\n::1 localhost\n"
