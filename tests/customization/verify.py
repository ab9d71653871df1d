"""Independent checks of a customized disk: fsck tools, table checkers, and a read-only look inside."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


def sh(*argv: str, check: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), input=stdin.decode() if stdin is not None else None, capture_output=True, text=True,
        env={**os.environ, "LANG": "C"},
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {proc.returncode}: {proc.stdout[-800:]}{proc.stderr[-800:]}"
        )
    return proc


def table(path: Path) -> dict:
    return json.loads(sh("sfdisk", "--json", str(path)).stdout)["partitiontable"]


def partition(path: Path, number: int) -> tuple[int, int]:
    """(offset, size) in bytes of partition ``number``."""
    for p in table(path)["partitions"]:
        if int(re.search(r"(\d+)$", p["node"]).group(1)) == number:
            return p["start"] * 512, p["size"] * 512
    raise AssertionError(f"no partition {number}")


def assert_table_clean(path: Path) -> None:
    assert "No errors detected" in sh("sfdisk", "--verify", str(path)).stdout
    if table(path)["label"] == "gpt":
        out = sh("sgdisk", "-v", str(path)).stdout
        assert "No problems found" in out, out


@contextlib.contextmanager
def loop(path: Path, offset: int, size: int, read_only: bool = True) -> Iterator[str]:
    argv = ["losetup", "--find", "--show", "--offset", str(offset), "--sizelimit", str(size)]
    dev = sh(*argv, *(["--read-only"] if read_only else []), str(path)).stdout.strip()
    try:
        yield dev
    finally:
        sh("losetup", "--detach", dev)


def assert_fs_clean(path: Path, number: int, fs: str) -> None:
    offset, size = partition(path, number)
    if fs.startswith("ext"):
        sh("e2fsck", "-f", "-n", f"{path}?offset={offset}")
        return
    with loop(path, offset, size) as dev:
        if fs == "xfs":
            sh("xfs_repair", "-n", dev)
        else:
            sh("btrfs", "check", "--readonly", dev)


def fs_size(path: Path, number: int, fs: str) -> int:
    """The filesystem's own idea of its size, read from its superblock."""
    offset, size = partition(path, number)
    if fs.startswith("ext"):
        out = sh("dumpe2fs", "-h", f"{path}?offset={offset}").stdout
        fields = dict(ln.split(":", 1) for ln in out.splitlines() if ":" in ln)
        return int(fields["Block count"]) * int(fields["Block size"])
    with loop(path, offset, size) as dev:
        if fs == "xfs":
            out = sh("xfs_db", "-r", "-c", "sb 0", "-c", "p dblocks", "-c", "p blocksize", dev).stdout
            values = dict(ln.split(" = ") for ln in out.splitlines())
            return int(values["dblocks"]) * int(values["blocksize"])
        out = sh("btrfs", "inspect-internal", "dump-super", dev).stdout
        return int(re.search(r"^dev_item\.total_bytes\s+(\d+)", out, re.M).group(1))


def assert_fills_partition(path: Path, number: int, fs: str) -> None:
    _, size = partition(path, number)
    used = fs_size(path, number, fs)
    assert size - used < 1 << 20, f"filesystem {used} bytes in a {size}-byte partition"


@contextlib.contextmanager
def guest_root(path: Path, number: int, fs: str) -> Iterator[Path]:
    """The guest filesystem mounted read-only (root)."""
    offset, size = partition(path, number)
    options = "ro,nouuid,norecovery" if fs == "xfs" else "ro,noload" if fs.startswith("ext") else "ro"
    with loop(path, offset, size) as dev, tempfile.TemporaryDirectory(prefix="atoll-verify-") as mnt:
        sh("mount", "-t", fs, "-o", options, dev, mnt)
        try:
            yield Path(mnt)
        finally:
            sh("umount", mnt)


def guest_crypt_verifies(root: Path, password: str, hashed: str) -> bool:
    """Check ``hashed`` with the guest's own libcrypt, loaded in a fresh process."""
    lib = next((p for p in (root / "usr/lib/x86_64-linux-gnu").glob("libcrypt.so.1*") if p.is_file()), None)
    assert lib is not None, "the guest has no libcrypt.so.1"
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "libcrypt.so.1"
        copy.write_bytes(lib.read_bytes())
        code = (
            "import ctypes,sys\n"
            f"lib=ctypes.CDLL({str(copy)!r})\n"
            f"assert {str(copy)!r} in open('/proc/self/maps').read()\n"
            "lib.crypt.restype=ctypes.c_char_p\n"
            "pw=sys.stdin.buffer.read(); h=sys.argv[1].encode()\n"
            "print(lib.crypt(pw, h) == h)\n"
        )
        out = sh(sys.executable, "-c", code, hashed, stdin=password.encode()).stdout.strip()
    return out == "True"


def leftovers() -> tuple[set[str], set[str]]:
    """Mount points and loop backing files that belong to the engine (atoll-guest-/atoll-ext-)."""
    mounts = {ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines() if "atoll-guest-" in ln}
    loops = set(sh("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").stdout.splitlines())
    return mounts, loops


def digest(path: Path) -> tuple[int, str]:
    """(size, sha256) of a file: proves a failed run wrote nothing."""
    import hashlib

    with open(path, "rb") as f:
        return os.fstat(f.fileno()).st_size, hashlib.file_digest(f, "sha256").hexdigest()
