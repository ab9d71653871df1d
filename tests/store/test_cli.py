"""The ``atoll`` CLI as users and Ganeti run it: real processes, parallel calls, crashes, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import StoreEnv
from tests.images.build import ImageSpec, build


def error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got {lines}"
    return lines[0]


@pytest.fixture
def image_disk(tmp_path: Path) -> Path:
    """A GPT disk with a synthetic Linux tree on ext4 (partition 1 at 1 MiB)."""
    disk = tmp_path / "image.raw"
    assert build(ImageSpec(kind="synthetic", table="gpt", fs="ext4", size=64 << 20), disk).offset == 1 << 20
    return disk


@pytest.fixture
def image(env: StoreEnv, image_disk: Path) -> StoreEnv:
    """A registered image that customizes for real."""
    env.cli("object", "upload", "images/d.raw", str(image_disk))
    env.cli(
        "image", "register", "images/d.raw", "--name", "deb",
        "--property", "OSFAMILY=linux", "--property", "ROOT_PARTITION=1", "--property", "USERS=root",
    )  # fmt: skip
    return env


def guest_file(disk: Path, path: str) -> str:
    """A file of the ext4 root filesystem at 1 MiB in a raw disk (e2fsprogs, no mount)."""
    out = subprocess.run(
        ["debugfs", "-R", f"cat {path}", f"{disk}?offset={1 << 20}"],
        capture_output=True,
        check=True,
        text=True,
    )
    return out.stdout


def test_main_job_through_the_cli(image: StoreEnv, image_disk: Path, tmp_path: Path) -> None:
    env = image
    vol = env.json("volume", "create", "web1", "--from", "deb", "--size", "128M", "--hostname", "web1")
    assert (vol["kind"], vol["size"], vol["mode"]) == ("volume", 128 << 20, "rw")
    tasks = {t["name"]: t["status"] for t in vol["customization"]["tasks"]}
    assert tasks["AssignHostname"] == "ran" and tasks["FilesystemResize"] == "ran"
    snap = env.json("volume", "snapshot", "web1", "web1-monday")
    assert (snap["kind"], snap["parent"]) == ("snapshot", vol["id"])
    restored = env.json("volume", "create", "restore", "--from", "web1-monday")
    assert "customization" not in restored, "a snapshot's clone runs no task"
    out = tmp_path / "back.raw"
    env.cli("object", "download", "web1-monday", str(out))
    assert out.stat().st_size == 128 << 20
    assert guest_file(out, "/etc/hostname") == "web1\n"
    image2 = env.json("image", "set", "web1-monday", "--unset", "EXCLUDE_ALL_TASKS")
    assert image2["kind"] == "image" and image2["id"] == snap["id"]
    shown = env.json("resource", "show", "web1-monday")
    assert [a["name"] for a in shown["lineage"]] == ["web1", "deb"]
    assert [c["name"] for c in shown["children"]] == ["restore"]
    assert shown["object"]["container"] == "snapshots"
    kinds = {r["name"]: r["kind"] for r in env.json("image", "list", "--all")}
    assert kinds == {"deb": "image", "web1-monday": "image"}
    env.cli("object", "download", "images/d.raw", str(tmp_path / "orig.raw"))
    assert (tmp_path / "orig.raw").read_bytes() == image_disk.read_bytes(), "the image never changes"
    listed = env.cli("volume", "list").stdout.decode()
    assert "web1" in listed and "128.0 MiB" in listed
    assert env.cli("fsck").returncode == 0


def test_failed_customization_leaves_no_volume(image: StoreEnv, tmp_path: Path) -> None:
    key = tmp_path / "bad.pub"
    key.write_text("not a key\n")
    proc = image.cli("volume", "create", "web1", "--from", "deb", "--ssh-key", str(key), check=False)
    assert proc.returncode != 0
    assert image.json("volume", "list") == []
    bad = image.cli("volume", "create", "web2", "--from", "deb", "--hostname", "-bad-", check=False)
    assert bad.returncode != 0 and "hostname" in bad.stderr.decode().lower()
    assert image.json("volume", "list") == []
    assert image.cli("fsck").returncode == 0


def test_upload_from_stdin(env: StoreEnv) -> None:
    data = os.urandom(3 << 20)
    proc = env.cli("-o", "json", "object", "upload", "c/piped", "-", "--meta", "source=test", input=data)
    res = json.loads(proc.stdout)
    assert res["size"] == len(data)
    assert res["object"]["meta"] == {"source": "test"}
    assert env.cli("object", "download", "c/piped", "-").stdout == data


ERRORS = [
    (["volume", "create", "v", "--size", "ten"], 2, "invalid size 'ten'"),
    (["volume", "create", "v", "--from", "deb", "--size", "1M"], 1, "smaller than its source"),
    (["volume", "create", "v", "--from", "nope"], 1, "'nope' not found"),
    (["object", "delete", "images/d.raw"], 1, "still registered as image 'deb'"),
    (["image", "register", "images/d.raw", "--name", "bad name"], 2, "invalid image name"),
    (["image", "set", "deb", "--property", "novalue"], 2, "expected KEY=VALUE"),
    (["object", "upload", "images/d.raw", "/dev/null"], 1, "already exists"),
]


def test_errors_are_one_clear_line(image: StoreEnv) -> None:
    """Each refused command (one store for all: a refused command changes nothing) exits 2 for bad usage
    and 1 for a refused operation, with one ``atoll: error:`` line that says why."""
    for args, code, message in ERRORS:
        proc = image.cli(*args, check=False)
        assert (proc.returncode, message in proc.stderr.decode()) == (code, True), (args, proc.stderr)
        if code == 1:
            assert error_line(proc).startswith("atoll: error: "), args
    assert image.json("volume", "list") == [] and image.cli("fsck").returncode == 0


def test_non_admin_cannot_set_protected_property(env: StoreEnv, disk: Path) -> None:
    env.cli("object", "upload", "alice/d.raw", str(disk), user="alice")
    env.cli("image", "register", "alice/d.raw", "--name", "alices", user="alice")
    proc = env.cli("image", "set", "alices", "--property", "ATOLL_TIER=gold", user="alice", check=False)
    assert proc.returncode == 1
    assert (
        error_line(proc)
        == "atoll: error: permission denied: property ATOLL_TIER is protected: only an admin may set it"
    )
    env.cli("image", "set", "alices", "--property", "ATOLL_TIER=gold")  # root is an admin
    props = env.json("image", "show", "alices", user="alice")["image"]["properties"]
    assert props == {"ATOLL_TIER": "gold"}


def test_parallel_clones_of_one_image(image: StoreEnv) -> None:
    with ThreadPoolExecutor(8) as pool:
        procs = list(
            pool.map(
                lambda i: image.cli("volume", "create", f"vm{i}", "--from", "deb", check=False), range(8)
            )
        )
    assert [p.returncode for p in procs] == [0] * 8, [p.stderr for p in procs]
    names = sorted(v["name"] for v in image.json("volume", "list"))
    assert names == [f"vm{i}" for i in range(8)]
    assert image.cli("fsck").returncode == 0


def test_parallel_duplicate_names_create_one(image: StoreEnv) -> None:
    with ThreadPoolExecutor(4) as pool:
        procs = list(
            pool.map(lambda _: image.cli("volume", "create", "same", "--from", "deb", check=False), range(4))
        )
    assert sorted(p.returncode for p in procs) == [0, 1, 1, 1]
    assert image.cli("fsck").returncode == 0


@pytest.mark.parametrize(
    ("failpoint", "args"),
    [
        pytest.param("clone.after-backend", ["volume", "create", "v2", "--from", "deb"], id="clone"),
        pytest.param("snapshot.after-backend", ["volume", "snapshot", "v", "snap"], id="snapshot"),
        pytest.param("upload.after-backend", ["object", "upload", "images/e.raw", "{disk}"], id="upload"),
    ],
)
def test_crash_between_steps_is_repaired(
    image: StoreEnv, disk: Path, failpoint: str, args: list[str]
) -> None:
    env = image
    env.cli("volume", "create", "v", "--from", "deb")
    before = env.json("resource", "show", "v")
    files_before = sorted(os.listdir(env.config.store.path / "data"))
    crash = subprocess.run(
        [sys.executable, "-m", "provider", *[a.format(disk=disk) for a in args]],
        env={**os.environ, "ATOLL_CONFIG": str(env.config_path), "ATOLL_FAILPOINT": failpoint},
        capture_output=True,
        check=False,
    )
    assert crash.returncode == -signal.SIGKILL
    report = env.cli("-o", "json", "fsck", check=False)
    assert report.returncode == 1, "the interrupted operation is reported"
    assert '"interrupted"' in report.stdout.decode()
    assert env.cli("fsck", "--repair").returncode == 0
    assert env.cli("fsck").returncode == 0
    assert env.json("resource", "show", "v")["id"] == before["id"]
    if failpoint == "snapshot.after-backend" and env.backend == "qcow2":
        # past its backend step the volume reads and writes its new top: fsck completes the snapshot
        assert env.json("resource", "show", "snap")["parent"] == before["id"]
        assert len(os.listdir(env.config.store.path / "data")) == len(files_before) + 1
        return
    assert sorted(os.listdir(env.config.store.path / "data")) == files_before
    # the names the crashed call wanted are free again, and the volume still snapshots
    env.cli(*[a.format(disk=disk) for a in args])


def upload_in_progress(env: StoreEnv, path: str) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``atoll object upload PATH -`` and return once its data file exists: it then waits for more
    input on a pipe that stays open (the test never writes, so it can never block on the pipe)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "provider", "object", "upload", path, "-"],
        env={**os.environ, "ATOLL_CONFIG": str(env.config_path)},
        stdin=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    data = env.config.store.path / "data"
    deadline = time.monotonic() + 120
    while not (data.exists() and any(data.iterdir())):
        assert proc.poll() is None, "the upload ended early"
        assert time.monotonic() < deadline, "the upload never started"
        time.sleep(0.05)
    return proc, data


def test_killed_upload_leaves_nothing(env: StoreEnv) -> None:
    proc, data = upload_in_progress(env, "c/slow")
    proc.kill()
    proc.wait(timeout=60)
    report = env.cli("fsck", "--repair", check=False)
    assert report.returncode == 0, report.stdout
    assert list(data.iterdir()) == []
    assert env.json("object", "list") == []
    env.cli("object", "upload", "c/slow", "/dev/null")  # the name is usable again


def test_sigterm_rolls_back_at_once(env: StoreEnv) -> None:
    proc, data = upload_in_progress(env, "c/term")
    proc.terminate()
    assert proc.wait(timeout=60) != 0
    assert list(data.iterdir()) == []
    assert env.cli("fsck").returncode == 0, "SIGTERM cleaned up without fsck"


def test_help_teaches(qcow2_env: StoreEnv) -> None:
    out = qcow2_env.cli("volume", "create", "--help").stdout.decode()
    assert "Examples:" in out and "--from" in out
    assert qcow2_env.cli("--version").stdout.decode().startswith("atoll, version")
