"""Path resolution inside the guest, the same for both backends: symlinks never leave the guest root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from customization.errors import GuestPathError
from customization.guestfs.base import GuestFS
from customization.guestfs.debugfs import DebugfsFS
from customization.guestfs.mounted import MountedFS
from tests.customization import verify
from tests.customization.conftest import MakeImage


def _tree(tree: Path) -> None:
    (tree / "abs").symlink_to("/etc")
    (tree / "up").symlink_to("../../../../../etc/hostname")
    (tree / "loop1").symlink_to("/loop2")
    (tree / "loop2").symlink_to("loop1")
    (tree / "etc/hostlink").symlink_to("/proc/self/environ")
    (tree / "etc/dangling").symlink_to("/nowhere/at/all")


@pytest.fixture(params=["debugfs", "mount"])
def guest(request: pytest.FixtureRequest, make_image: MakeImage) -> Iterator[GuestFS]:
    info = make_image(hook=_tree)
    fs: GuestFS
    if request.param == "debugfs":
        fs = DebugfsFS(f"{info.path}?offset={info.offset}")
    else:
        fs = MountedFS(info.path, info.offset, info.bytes, "ext4")
    try:
        yield fs
    finally:
        fs.close()
    verify.assert_fs_clean(Path(info.path), 1, "ext4")


def test_absolute_and_dotdot_links_resolve_inside(guest: GuestFS) -> None:
    assert guest.resolve("/abs/hostname") == "/etc/hostname"
    assert guest.resolve("/up") == "/etc/hostname"
    assert guest.resolve("/../../etc/./hostname") == "/etc/hostname"
    assert guest.read("/up") == b"template\n"
    with pytest.raises(GuestPathError, match="/etc/dangling: /nowhere does not exist in the guest"):
        guest.resolve("/etc/dangling")
    assert guest.resolve("/abs", follow_last=False) == "/abs"


def test_magic_links_of_the_host_are_not_followed(guest: GuestFS) -> None:
    with pytest.raises(GuestPathError, match="/proc does not exist in the guest"):
        guest.read("/etc/hostlink")  # the guest has no /proc/self/environ: never the host's


def test_link_loops_are_an_error(guest: GuestFS) -> None:
    with pytest.raises(GuestPathError, match="too many levels of symbolic links"):
        guest.resolve("/loop1/x")


def test_writes_refuse_symlinks_but_follow_parents(guest: GuestFS) -> None:
    with pytest.raises(GuestPathError, match="refusing to write /abs: it is a symbolic link"):
        guest.write("/abs", b"x")
    with pytest.raises(GuestPathError, match="refusing to use /abs"):
        guest.ensure_dir("/abs", 0o700, 0, 0)
    guest.write("/abs/new-file", b"data", mode=0o600, uid=12, gid=34)
    st = guest.lstat("/etc/new-file")
    assert st is not None and (st.kind, st.mode, st.uid, st.gid, st.size) == ("file", 0o600, 12, 34, 4)
    assert guest.read("/etc/new-file") == b"data"


def test_replace_keeps_attributes_and_remove_takes_the_link(guest: GuestFS) -> None:
    guest.write("/etc/shadow", b"root:*:1::::::\n")
    st = guest.lstat("/etc/shadow")
    assert st is not None and (st.mode, st.uid, st.gid) == (0o640, 0, 42)
    assert guest.remove("/abs") is True
    assert guest.lstat("/abs") is None and guest.lstat("/etc/hostname") is not None
    assert guest.remove("/abs") is False
    with pytest.raises(GuestPathError, match="is a directory"):
        guest.remove("/etc")


def test_ensure_dir_sets_exact_attributes(guest: GuestFS) -> None:
    assert guest.ensure_dir("/root/.ssh", 0o700, 0, 0) is True
    assert guest.ensure_dir("/root/.ssh", 0o700, 0, 0) is False
    assert guest.ensure_dir("/root/.ssh", 0o750, 5, 6) is True
    st = guest.lstat("/root/.ssh")
    assert st is not None and (st.kind, st.mode, st.uid, st.gid) == ("dir", 0o750, 5, 6)
    assert "ssh_host_rsa_key" in guest.listdir("/abs/ssh")
