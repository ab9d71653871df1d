"""The role's module atoll_store_fs on its refusals and in check mode (the XFS it makes and mounts is
tested through the playbook in test_node.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.ansible.playbook import ROLE_DIR, tool, tool_env
from tests.helpers import need, need_tools


def store_fs(tmp_path: Path, *options: str, **args: str) -> tuple[int, dict[str, object]]:
    """Run the module ad hoc on this machine; return the exit code and the module's result."""
    ansible = tool("ansible")
    need(ansible is not None, "needs ansible-core (pip install ansible-core)")
    assert ansible is not None
    argv = [ansible, "localhost", "-i", "localhost,", "-c", "local", "-M", str(ROLE_DIR / "library")]
    argv += ["-e", "ansible_python_interpreter=/usr/bin/python3", "-m", "atoll_store_fs"]
    argv += ["-a", json.dumps({"fstab": str(tmp_path / "fstab"), **args}), *options]
    proc = subprocess.run(argv, env=tool_env(), capture_output=True, text=True, timeout=300, check=False)
    assert "=>" in proc.stdout, proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout.split("=>", 1)[1])


def test_a_device_with_another_filesystem_is_never_formatted(tmp_path: Path) -> None:
    need_tools("mkfs.ext4", "blkid")
    image = tmp_path / "ext4.img"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    rc, result = store_fs(tmp_path, src=str(image), path=str(tmp_path / "store"))
    assert rc != 0 and result["msg"] == f"{image} holds a ext4 filesystem: refusing to format it as XFS"
    probe = subprocess.run(
        ["blkid", "-p", "-o", "value", "-s", "TYPE", str(image)], capture_output=True, text=True
    )
    assert probe.stdout.strip() == "ext4"
    assert not (tmp_path / "fstab").exists() and not (tmp_path / "store").exists()


def test_a_missing_device_without_a_size_is_an_error(tmp_path: Path) -> None:
    rc, result = store_fs(tmp_path, src=str(tmp_path / "absent.img"), path=str(tmp_path / "store"))
    assert rc != 0 and "does not exist" in str(result["msg"])


def test_a_store_directory_with_files_is_not_mounted_over(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "catalog.sqlite").write_bytes(b"")
    image = tmp_path / "store.xfs"
    rc, result = store_fs(tmp_path, src=str(image), path=str(store), size="1G")
    assert (
        rc != 0
        and result["msg"] == f"{store} is not empty: move its files away before mounting a filesystem there"
    )
    assert not image.exists()


def test_check_mode_reports_and_creates_nothing(tmp_path: Path) -> None:
    image = tmp_path / "images" / "store.xfs"
    rc, result = store_fs(tmp_path, "--check", src=str(image), path=str(tmp_path / "store"), size="1G")
    assert rc == 0 and result["changed"] is True
    assert result["changes"] == [f"created image file {image}"]
    assert not image.exists() and not (tmp_path / "fstab").exists() and not (tmp_path / "store").exists()
