"""A full store: upload, clone and snapshot that run out of space fail with one clear line, roll back,
leave every other resource intact (re-hashed by a scrub), and the store works again once space is freed.
The store lives on a small loop-mounted filesystem (ext4 for qcow2, XFS with reflink for reflink)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FILE_BACKENDS, StoreEnv, make_store_env, write_disk
from tests.helpers import need_root, need_tools
from tests.images import build

MiB = 1 << 20


@pytest.fixture(params=FILE_BACKENDS)
def small_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreEnv]:
    need_root()
    need_tools("mkfs.ext4", "mkfs.xfs", "mount", "fallocate")
    image, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    if request.param == "qcow2":
        size, mkfs = 64 * MiB, ["mkfs.ext4", "-q", "-F", "-m", "0"]
    else:
        size, mkfs = 320 * MiB, ["mkfs.xfs", "-q", "-m", "reflink=1"]  # the smallest XFS there is
    with open(image, "wb") as f:
        f.truncate(size)
    subprocess.run([*mkfs, str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield make_store_env(request.param, mnt / "store", "")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path, name: str, leave: int) -> Path:
    """Take all free space of ``mnt`` but about ``leave`` bytes (0: every last block)."""
    st = os.statvfs(mnt)
    filler = mnt / name
    size = st.f_bavail * st.f_frsize - max(leave, 1 * MiB)
    if size > 0:
        subprocess.run(["fallocate", "-l", str(size), str(filler)], check=True)
    if leave == 0:  # the last blocks, one write at a time, until the filesystem says no
        with open(filler, "ab", buffering=0) as f:
            try:
                while True:
                    f.write(b"\xff" * 4096)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    return filler


def _refused(env: StoreEnv, *args: str) -> str:
    proc = env.cli(*args, check=False)
    assert proc.returncode == 1, f"atoll {' '.join(args)} did not fail: {proc.stdout!r}"
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _consistent(env: StoreEnv) -> None:
    report = env.json("fsck", "--scrub", "--restart")
    assert report["findings"] == [] and report["clean"], report
    assert report["scrub"]["clean"], report["scrub"]


def test_full_store_fails_cleanly_and_recovers(small_env: StoreEnv, tmp_path: Path) -> None:
    env = small_env
    mnt = env.config.store.path.parent
    base = write_disk(tmp_path / "base.raw", 8 * MiB, every=64 * 1024)
    env.cli("object", "upload", "images/base.raw", str(base))
    env.cli("image", "register", "images/base.raw", "--name", "base")
    env.cli("volume", "create", "keep", "--from", "base", "--no-customize")
    env.cli("volume", "snapshot", "keep", "keep-monday")
    before = {r["name"]: r["id"] for r in env.json("object", "list")}
    data = sorted(p.name for p in (env.config.store.path / "data").iterdir())

    big = tmp_path / "big.raw"
    big.write_bytes(os.urandom(24 * MiB))  # no holes: every byte must be stored
    _fill(mnt, "filler-1", 4 * MiB)
    line = _refused(env, "object", "upload", "images/big.raw", str(big))
    assert line.startswith("atoll: error: the store at ") and "is full" in line, line
    assert {r["name"]: r["id"] for r in env.json("object", "list")} == before
    assert sorted(p.name for p in (env.config.store.path / "data").iterdir()) == data
    _consistent(env)

    _fill(mnt, "filler-2", 0)
    for args in (
        ("volume", "create", "c1", "--from", "base", "--no-customize"),
        ("volume", "snapshot", "keep", "keep-tue"),
    ):
        proc = env.cli(*args, check=False)
        if proc.returncode != 0:  # a reflink clone may still fit: it shares every block
            lines = proc.stderr.decode().strip().splitlines()
            assert len(lines) == 1 and "is full" in lines[0], lines
        elif env.backend == "qcow2":
            pytest.fail(f"atoll {' '.join(args)} succeeded on a full ext4")

    for filler in mnt.glob("filler-*"):
        filler.unlink()
    _consistent(env)
    env.cli("object", "upload", "images/big.raw", str(big))
    env.cli("volume", "create", "c2", "--from", "base", "--no-customize")
    env.cli("volume", "snapshot", "keep", "keep-wed")
    _consistent(env)


def test_customization_that_fills_the_store_leaves_no_volume(small_env: StoreEnv, tmp_path: Path) -> None:
    """The clone fits, its customization does not (a 4 MiB file injected with 1 MiB left): one line, no
    volume, the image intact; on reflink the half-written clone's space is given back so the catalog
    can record the removal on the full filesystem itself."""
    env = small_env
    mnt = env.config.store.path.parent
    guest, _info = build.cached(build.ImageSpec(size=32 * MiB))
    env.cli("object", "upload", "images/guest.raw", str(guest))
    props = ("--property", "OSFAMILY=linux", "--property", "ROOT_PARTITION=1", "--property", "USERS=root")
    env.cli("image", "register", "images/guest.raw", "--name", "guest", *props)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(4 * MiB))
    create = ("volume", "create", "c1", "--from", "guest", "--hostname", "c1", "--file", f"/root/big={big}")
    _fill(mnt, "filler", 1 * MiB)
    proc = env.cli(*create, check=False)
    assert proc.returncode == 1, proc.stdout
    # stderr: a progress line per task, then the error in one line
    errors = [x for x in proc.stderr.decode().splitlines() if x.startswith("atoll")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr.decode(), proc.stderr.decode()
    assert errors[0].startswith("atoll: error: customization of c1 failed: EnforcePersonality: "), errors
    assert errors[0].endswith(f"(the store at {env.config.store.path} is full)"), errors
    assert env.json("volume", "list") == []
    _consistent(env)
    (mnt / "filler").unlink()
    assert env.json(*create)["customization"]["tasks"], "the same create works once there is room"
    _consistent(env)


def test_qemu_img_out_of_space_is_storage_full(tmp_path: Path) -> None:
    """Error path only (a fake runner): qemu-img's ENOSPC message becomes the store-full error."""
    from atoll_common.process import ProcessError
    from provider.backends.qcow2 import Qcow2Backend
    from provider.config import StoreConfig
    from provider.errors import StorageFull

    def full(argv: Sequence[str], **_kw: Any) -> Any:
        raise ProcessError(argv, 1, "", "qemu-img: v.qcow2: Could not write: No space left on device\n")

    backend = Qcow2Backend(StoreConfig(backend="qcow2", path=tmp_path), run=full)
    with pytest.raises(StorageFull, match=f"the store at {tmp_path / 'data'} is full"):
        backend.create_empty("v.qcow2", MiB)
    with pytest.raises(StorageFull):
        backend.clone("b.raw", "raw", "v.qcow2", MiB)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_lock_file_out_of_space_or_quota_is_storage_full(
    qcow2_env: StoreEnv, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """Error path only (a fake os.open): a lock file that cannot be made because the filesystem is full
    or the user's quota is spent is the store-full error, not a bare OSError."""
    from provider.errors import StorageFull
    from provider.services import base

    store = qcow2_env.open()
    real_open = os.open

    def refuse(path: Any, flags: int, *args: Any) -> int:
        if str(path).endswith(".lock") and flags & os.O_CREAT:
            raise OSError(code, os.strerror(code))
        return real_open(path, flags, *args)

    monkeypatch.setattr(base.os, "open", refuse)
    with pytest.raises(StorageFull, match="is full"):
        store.volumes.create("v", size=MiB)
    monkeypatch.undo()
    assert store.volumes.list() == []
    assert store.volumes.create("v", size=MiB).name == "v"
