"""ChangePassword: shadow hash and lastchg for USERS, from a plaintext or a given hash."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from customization import crypt
from customization.errors import TaskFailed
from customization.params import InstanceParams, Secret
from tests.customization import verify
from tests.customization.conftest import MakeImage
from tests.customization.runner import run


def _shadow(root: Path) -> dict[str, list[str]]:
    return {ln.split(":")[0]: ln.split(":") for ln in (root / "etc/shadow").read_text().splitlines()}


@pytest.mark.parametrize("method", ["sha512", "yescrypt"])
def test_password_hashed_for_every_user(make_image: MakeImage, method: str) -> None:
    info = make_image()
    props = {"USERS": "root user", "PASSWD_HASHING_METHOD": method}
    run(info, InstanceParams(password=Secret("pw with spaces")), ["ChangePassword"], props)
    with verify.guest_root(Path(info.path), 1, "ext4") as root:
        shadow = _shadow(root)
        st = (root / "etc/shadow").stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 0, 42)  # mode and owner kept
    today = int(time.time() // 86400)
    for user in ("root", "user"):
        assert shadow[user][1].startswith("$6$" if method == "sha512" else "$y$")
        assert crypt.verify_password("pw with spaces", shadow[user][1])
        assert int(shadow[user][2]) in (today, today - 1)
    assert shadow["daemon"][1] == "*"  # others untouched


def test_given_hash_is_written_verbatim(make_image: MakeImage) -> None:
    info = make_image(table="mbr", fs="btrfs")
    hashed = crypt.hash_password("x", "yescrypt")
    run(info, InstanceParams(password_hash=hashed), ["ChangePassword"])
    with verify.guest_root(Path(info.path), 1, "btrfs") as root:
        assert _shadow(root)["root"][1] == hashed


def test_hash_verifies_with_the_guests_own_crypt(make_image: MakeImage) -> None:
    info = make_image(kind="minbase")
    run(info, InstanceParams(password=Secret("guest-checks-this")), ["ChangePassword"], {"USERS": "root"})
    with verify.guest_root(Path(info.path), 1, "ext4") as root:
        hashed = _shadow(root)["root"][1]
        assert verify.guest_crypt_verifies(root, "guest-checks-this", hashed)
        assert not verify.guest_crypt_verifies(root, "wrong", hashed)


def test_unknown_user_fails_before_writing(make_image: MakeImage) -> None:
    info = make_image()
    with pytest.raises(
        TaskFailed, match="ChangePassword: USERS names accounts the guest does not have: ghost"
    ):
        run(info, InstanceParams(password=Secret("x")), ["ChangePassword"], {"USERS": "root ghost"})
    with verify.guest_root(Path(info.path), 1, "ext4") as root:
        assert _shadow(root)["root"][1] == "*"
