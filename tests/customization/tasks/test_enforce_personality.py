"""EnforcePersonality: files with content, owner (guest names), group and mode; parents created."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from customization.errors import TaskFailed
from customization.params import InjectedFile, InstanceParams
from tests.customization import verify
from tests.customization.conftest import MakeImage
from tests.customization.runner import run


@pytest.mark.parametrize(("fs", "backend"), [("ext4", "debugfs"), ("ext4", "mount"), ("xfs", "auto")])
def test_files_written(make_image: MakeImage, fs: str, backend: str) -> None:
    info = make_image(fs=fs)
    files = (
        InjectedFile("/etc/motd", b"welcome\n", "root", "root", 0o644),
        InjectedFile("/opt/app/conf.d/app.conf", b"\x00binary\xff", "user", "shadow", 0o600),
        InjectedFile("/home/user/by-id", b"", "1000", "1000", 0o400),
    )
    run(info, InstanceParams(files=files), ["EnforcePersonality"], backend=backend)
    with verify.guest_root(Path(info.path), 1, fs) as root:
        assert (root / "etc/motd").read_bytes() == b"welcome\n"
        st = os.stat(root / "opt/app/conf.d/app.conf")
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o600, 1000, 42)
        assert (root / "opt/app/conf.d/app.conf").read_bytes() == b"\x00binary\xff"
        assert os.stat(root / "opt/app").st_mode & 0o7777 == 0o755
        st = os.stat(root / "home/user/by-id")
        assert (st.st_mode & 0o7777, st.st_uid, st.st_size) == (0o400, 1000, 0)


def test_unknown_owner_names_every_bad_file(make_image: MakeImage) -> None:
    info = make_image()
    files = (InjectedFile("/etc/a", b"a", "ghost"), InjectedFile("/etc/b", b"b", "root", "nogroup2"))
    with pytest.raises(TaskFailed) as err:
        run(info, InstanceParams(files=files), ["EnforcePersonality"])
    assert "2 file(s) not injected" in str(err.value)
    assert "owner 'ghost'" in str(err.value) and "group 'nogroup2'" in str(err.value)
