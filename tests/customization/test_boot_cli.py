"""End to end through the CLI: upload, register with properties, clone larger with customization, boot.

Needs the provider's `object upload`, `image register`, `volume create --hostname/--ssh-key/--password-file`
and `volume attach/detach` (skipped, with the missing pieces named, on a checkout without them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.customization import qemu
from tests.customization.conftest import MakeImage
from tests.helpers import need_tools

PASSWORD = "cli pw 42"
NEEDED = {
    ("object", "upload"): (),
    ("image", "register"): ("--property",),
    ("volume", "create"): ("--hostname", "--ssh-key", "--password-file"),
    ("volume", "attach"): (),
    ("volume", "detach"): (),
}


def _atoll() -> list[str]:
    exe = shutil.which("atoll", path=str(Path(sys.executable).parent)) or shutil.which("atoll")
    return [exe] if exe else [sys.executable, "-m", "provider"]


def missing_cli() -> list[str]:
    """The CLI commands or options this test needs that `atoll --help` does not show yet."""
    missing = []
    for command, options in NEEDED.items():
        proc = subprocess.run([*_atoll(), *command, "--help"], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            missing.append(" ".join(command))
            continue
        missing += [f"{' '.join(command)} {o}" for o in options if o not in proc.stdout]
    return missing


def _find(data: Any, predicate: Any) -> Any:
    if predicate(data):
        return data
    children = data.values() if isinstance(data, dict) else data if isinstance(data, list) else ()
    for child in children:
        found = _find(child, predicate)
        if found is not None:
            return found
    return None


@pytest.mark.slow
def test_cli_clone_is_customized_and_boots(
    make_image: MakeImage, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    missing = missing_cli()
    if missing:
        pytest.skip(f"the provider CLI does not have these yet: {', '.join(missing)}")
    need_tools("qemu-system-x86_64")
    config = tmp_path / "atoll.yaml"
    config.write_text(f"store:\n  path: {tmp_path / 'store'}\n")
    env = {**os.environ, "ATOLL_CONFIG": str(config)}

    def atoll(*args: str) -> Any:
        proc = subprocess.run(
            [*_atoll(), "-o", "json", *args], capture_output=True, text=True, env=env, timeout=600
        )
        assert proc.returncode == 0, f"atoll {' '.join(args)}: {proc.stderr[-1500:]}"
        return json.loads(proc.stdout) if proc.stdout.strip().startswith(("{", "[")) else proc.stdout

    info = make_image("boot", "gpt", "ext4", size=1536 << 20)
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "key.pub").write_text(ssh_keypair[1] + "\n")
    atoll("init")
    atoll("object", "upload", "images/debian-boot.raw", info.path)
    props = ("--property", "OSFAMILY=linux", "--property", "ROOT_PARTITION=1", "--property", "USERS=root")
    atoll("image", "register", "images/debian-boot.raw", "--name", "debian-boot", *props)
    created = atoll(
        "volume", "create", "vm1", "--from", "debian-boot", "--size", "3G", "--hostname", "atoll-cli-vm",
        "--ssh-key", str(tmp_path / "key.pub"), "--password-file", str(tmp_path / "pw"),
    )  # fmt: skip
    assert PASSWORD not in json.dumps(created)
    tasks = _find(
        created, lambda d: isinstance(d, list) and d and all(isinstance(t, dict) and "status" in t for t in d)
    )
    assert tasks, created
    by_name = {t["name"]: t["status"] for t in tasks}
    assert by_name["AssignHostname"] == by_name["FilesystemResize"] == by_name["InjectSSHKeys"] == "ran"
    attached = atoll("volume", "attach", "vm1")
    device = _find(attached, lambda v: isinstance(v, str) and v.startswith("/dev/"))
    if device is None:
        device = re.search(r"/dev/\S+", json.dumps(attached)).group(0)  # type: ignore[union-attr]
    try:
        with qemu.booted(Path(device), info.offset, 1, "atoll-cli-vm") as guest:
            out = qemu.ssh(guest, ssh_keypair[0], "hostname; findmnt -bno SIZE /")
        hostname, size = out.split()
        assert hostname == "atoll-cli-vm"
        assert int(size) > (3 << 30) - (300 << 20)
    finally:
        atoll("volume", "detach", "vm1")
