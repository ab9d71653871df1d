"""Build partitioned raw test disks: synthetic/minbase/boot tree x GPT/MBR x ext4/xfs/btrfs.

Usage: python -m tests.images.build [--kind synthetic] [--table gpt] [--fs ext4] [--layout root] [--size 1G]
       [--dirty] OUTPUT.img        (prints a JSON line describing the image)
The synthetic kind takes well under a second. Debootstrap trees are cached under /var/cache/atoll-tests
(ATOLL_TEST_CACHE); xfs, debootstrap and --dirty need root.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.images import trees

MIB = 1 << 20
TYPES = {
    "gpt": {"root": trees.ROOT_TYPE, "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"},
    "mbr": {"root": "83", "esp": "ef"},
}
LAYOUTS = ("root", "esp+root", "logical")
TreeHook = Callable[[Path], None]


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    kind: str = "synthetic"  # synthetic | minbase | boot
    table: str = "gpt"  # gpt | mbr
    fs: str = "ext4"  # ext4 | xfs | btrfs
    layout: str = "root"  # root | esp+root | logical (MBR: root in a logical partition)
    size: int = 1 << 30
    dirty: bool = False  # leave a journal to replay (ext4) or a dirty log (xfs)

    def name(self) -> str:
        return f"{self.kind}-{self.table}-{self.fs}-{self.layout.replace('+', '_')}-{self.size >> 20}M" + (
            "-dirty" if self.dirty else ""
        )


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    path: str
    table: str
    fs: str
    root_partition: int
    offset: int
    bytes: int
    fs_uuid: str
    disk_id: str


def _run(argv: list[str], stdin: str | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, env={**os.environ, "LANG": "C"})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def _partition(out: Path, spec: ImageSpec) -> int:
    """Write the table; returns the root partition number (always the last one, so it can grow)."""
    types = TYPES[spec.table]
    lines = ["label: gpt" if spec.table == "gpt" else "label: dos"]
    if spec.layout == "root":
        lines.append(f"type={types['root']}")
        root = 1
    elif spec.layout == "esp+root":
        lines += [f"start=2048, size=32MiB, type={types['esp']}", f"type={types['root']}"]
        root = 2
    else:
        if spec.table != "mbr":
            raise ValueError("the logical layout needs an MBR table")
        lines += [f"start=2048, size=32MiB, type={types['esp']}", "type=5", f"type={types['root']}"]
        root = 5
    _run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(out)], "\n".join(lines) + "\n")
    if spec.layout != "root":
        esp_start, esp_sectors = (
            int(x) for x in _run(["partx", "-g", "-o", "START,SECTORS", "-n", "1", str(out)]).split()
        )
        _run(["mkfs.fat", "-F", "32", "-n", "ESP", f"--offset={esp_start}", str(out), str(esp_sectors // 2)])
    return root


def _sparse_copy(src: Path, dst: Path, at: int) -> None:
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        size = os.fstat(fin.fileno()).st_size
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fin.fileno(), pos, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fin.fileno(), data, os.SEEK_HOLE)
            fin.seek(data)
            fout.seek(at + data)
            left = hole - data
            while left:
                chunk = fin.read(min(left, 8 * MIB))
                fout.write(chunk)
                left -= len(chunk)
            pos = hole


@contextlib.contextmanager
def _mounted(path: Path, offset: int, size: int) -> Iterator[Path]:
    dev = _run(
        ["losetup", "--find", "--show", "--offset", str(offset), "--sizelimit", str(size), str(path)]
    ).strip()
    mnt = Path(tempfile.mkdtemp(prefix="atoll-build-"))
    try:
        _run(["mount", dev, str(mnt)])
        try:
            yield mnt
        finally:
            _run(["umount", str(mnt)])
    finally:
        mnt.rmdir()
        _run(["losetup", "--detach", dev])


def _make_fs(
    out: Path, spec: ImageSpec, tree: Path, offset: int, size: int, fs_uuid: str, work: Path
) -> None:
    if spec.fs == "ext4":
        _run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-L",
                "root",
                "-U",
                fs_uuid,
                "-d",
                str(tree),
                "-E",
                f"offset={offset}",
                str(out),
                f"{size // 1024}k",
            ]
        )
        return
    part = work / "part.img"
    with open(part, "wb") as f:
        f.truncate(size)
    if spec.fs == "btrfs":
        _run(["mkfs.btrfs", "-q", "-f", "-L", "root", "-U", fs_uuid, "--rootdir", str(tree), str(part)])
    elif spec.fs == "xfs":
        _run(["mkfs.xfs", "-q", "-f", "-L", "root", "-m", f"uuid={fs_uuid}", str(part)])
        with _mounted(part, 0, size) as mnt:
            _run(["cp", "-a", f"{tree}/.", str(mnt)])
    else:
        raise ValueError(spec.fs)
    _sparse_copy(part, out, offset)


def _make_dirty(out: Path, offset: int, size: int) -> None:
    """Write through the kernel, then shut the fs down without checkpointing: a real journal to replay."""
    with _mounted(out, offset, size) as mnt:
        (mnt / "etc/journaled").write_text("written before the crash\n")
        (mnt / "etc/motd").write_text("motd from the journal\n")
        _run(["sync"])
        _run(["xfs_io", "-x", "-c", "shutdown -f", str(mnt)])


def build(spec: ImageSpec, out: Path, tree_hook: TreeHook | None = None) -> ImageInfo:
    """Build ``out``; ``tree_hook`` may edit the (synthetic) tree before it becomes a filesystem."""
    if os.geteuid() != 0 and (spec.kind != "synthetic" or spec.fs == "xfs" or spec.dirty or tree_hook):
        raise PermissionError(f"building {spec.name()} needs root")
    out = Path(out)
    out.unlink(missing_ok=True)
    with open(out, "wb") as f:
        f.truncate(spec.size)
    with tempfile.TemporaryDirectory(prefix="atoll-img-") as tmp:
        work = Path(tmp)
        tree = trees.synthetic(work / "root") if spec.kind == "synthetic" else trees.debootstrap(spec.kind)
        if tree_hook is not None:
            if spec.kind != "synthetic":
                tree = _copy_tree(tree, work / "root")
            tree_hook(tree)
        root = _partition(out, spec)
        start, sectors = (
            int(x) for x in _run(["partx", "-g", "-o", "START,SECTORS", "-n", str(root), str(out)]).split()
        )
        offset, size = start * 512, sectors * 512
        fs_uuid = str(uuid.uuid4())
        _make_fs(out, spec, tree, offset, size, fs_uuid, work)
    if spec.dirty:
        _make_dirty(out, offset, size)
    disk_id = json.loads(_run(["sfdisk", "--json", str(out)]))["partitiontable"]["id"]
    return ImageInfo(str(out), spec.table, spec.fs, root, offset, size, fs_uuid, disk_id)


def _copy_tree(src: Path, dst: Path) -> Path:
    _run(["cp", "-a", f"{src}/.", str(dst) + "/"]) if dst.exists() else _run(["cp", "-a", str(src), str(dst)])
    return dst


def _cache_key(spec: ImageSpec) -> str:
    sources = [Path(__file__), Path(trees.__file__)]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    return f"{spec.name()}-{digest}"


def cached(spec: ImageSpec, cache: Path | None = None) -> tuple[Path, ImageInfo]:
    """A pristine image for ``spec``, built once per builder version; copy it before changing it."""
    base = (cache or trees.CACHE) / "images"
    base.mkdir(parents=True, exist_ok=True)
    key = _cache_key(spec)
    image, meta = base / f"{key}.img", base / f"{key}.json"
    if not meta.exists():
        pattern = re.compile(re.escape(spec.name()) + r"-[0-9a-f]{12}\.(img|json)$")
        for stale in base.iterdir():  # images made by an older version of this builder
            if pattern.match(stale.name) and not stale.name.startswith(key):
                stale.unlink(missing_ok=True)
        partial = base / f"{key}.{os.getpid()}.partial"
        info = build(spec, partial)
        os.replace(partial, image)
        meta.write_text(json.dumps(dataclasses.asdict(dataclasses.replace(info, path=str(image)))))
    return image, ImageInfo(**json.loads(meta.read_text()))


def copy(src: Path, dst: Path) -> Path:
    """A sparse (or reflinked) copy of an image."""
    _run(["cp", "--sparse=always", "--reflink=auto", str(src), str(dst)])
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="synthetic", choices=("synthetic", "minbase", "boot"))
    parser.add_argument("--table", default="gpt", choices=("gpt", "mbr"))
    parser.add_argument("--fs", default="ext4", choices=("ext4", "xfs", "btrfs"))
    parser.add_argument("--layout", default="root", choices=LAYOUTS)
    parser.add_argument("--size", default="1G", help="disk size, e.g. 1G or 2048M")
    parser.add_argument("--dirty", action="store_true")
    parser.add_argument("output")
    args = parser.parse_args(argv)
    size = int(args.size[:-1]) << {"G": 30, "M": 20}[args.size[-1].upper()]
    spec = ImageSpec(args.kind, args.table, args.fs, args.layout, size, args.dirty)
    if os.geteuid() != 0 and shutil.which("fakeroot") and "FAKEROOTKEY" not in os.environ:
        # Ownership in a synthetic tree needs (fake) root: one fakeroot session for the whole build.
        return subprocess.call(["fakeroot", sys.executable, "-m", "tests.images.build", *sys.argv[1:]])
    info = build(spec, Path(args.output))
    print(json.dumps(dataclasses.asdict(info)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
