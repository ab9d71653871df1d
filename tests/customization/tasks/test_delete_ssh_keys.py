"""DeleteSSHKeys: old host keys gone, fresh valid ones in place with the right modes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from customization.params import InstanceParams
from tests.customization import verify
from tests.customization.conftest import MakeImage
from tests.customization.runner import run


@pytest.mark.parametrize("fs", ["ext4", "xfs"])
def test_host_keys_are_regenerated(make_image: MakeImage, fs: str, tmp_path: Path) -> None:
    info = make_image(fs=fs)
    run(info, InstanceParams(hostname="keys1"), ["DeleteSSHKeys"])
    with verify.guest_root(Path(info.path), 1, fs) as root:
        names = sorted(p.name for p in (root / "etc/ssh").glob("ssh_host_*"))
        assert names == [f"ssh_host_{k}_key{s}" for k in ("ecdsa", "ed25519", "rsa") for s in ("", ".pub")]
        for kind in ("ecdsa", "ed25519", "rsa"):
            private, public = root / f"etc/ssh/ssh_host_{kind}_key", root / f"etc/ssh/ssh_host_{kind}_key.pub"
            assert (private.stat().st_mode & 0o777, private.stat().st_uid) == (0o600, 0)
            assert public.stat().st_mode & 0o777 == 0o644
            assert b"not-a-real" not in private.read_bytes()
            assert public.read_text().endswith(" root@keys1\n")
            copy = tmp_path / f"{kind}.key"
            copy.write_bytes(private.read_bytes())
            copy.chmod(0o600)
            derived = subprocess.run(
                ["ssh-keygen", "-y", "-f", str(copy)], capture_output=True, text=True, check=True
            )
            assert derived.stdout.split()[1] == public.read_text().split()[1]  # a matching, valid pair


def test_no_ssh_dir_is_unchanged(make_image: MakeImage) -> None:
    import shutil

    info = make_image(hook=lambda tree: shutil.rmtree(tree / "etc/ssh"))
    report = run(info, InstanceParams(), ["DeleteSSHKeys"])
    assert report.outcome("DeleteSSHKeys").message == "the image has no /etc/ssh"
