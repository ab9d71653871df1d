"""``atoll image import``: every format converted to a raw image; hostile input refused leaving nothing
behind; web-download with checked addresses; jobs that survive a crash with a reason."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import StoreEnv
from tests.imaging.conftest import MIB, imports_env, qemu_img
from tests.imaging.httpd import Server, serve


def error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, lines
    return lines[0]


def leftovers(env: StoreEnv) -> list[str]:
    """Every file in the store's data directory (hidden scratch files included) and staging."""
    root = env.config.store.path
    return sorted(str(p.relative_to(root)) for d in ("data", "staging") if (root / d).exists()
                  for p in (root / d).iterdir())  # fmt: skip


@pytest.fixture
def httpd(samples: dict[str, Path]) -> Iterator[Server]:
    with serve(samples["raw"].parent) as server:
        yield server


@pytest.mark.parametrize(
    "sample", ["qcow2", "qcow2-v2", "vmdk", "vmdk-stream", "vhdx", "vpc", "vpc-fixed", "vdi", "raw", "iso"]
)
def test_import_every_format(ienv: StoreEnv, samples: dict[str, Path], sample: str) -> None:
    img = ienv.json("image", "import", "img", "--from", str(samples[sample]))
    assert (img["kind"], img["image"]["status"], img["object"]["container"]) == ("image", "active", "imports")
    assert img["image"]["disk_format"] == ("iso" if sample == "iso" else "raw")
    data = ienv.cli("object", "download", "imports/img", "-").stdout
    expected = samples["iso" if sample == "iso" else "raw"].read_bytes()
    assert data[: len(expected)] == expected and not data[len(expected) :].strip(b"\0")
    assert img["sha256"] == hashlib.sha256(data).hexdigest()
    stored = ienv.config.store.path / "data" / f"{img['id']}.raw"
    assert stored.stat().st_blocks * 512 < 8 * MIB, "holes stay holes: only the data is written"
    job = ienv.json("image", "jobs", "img")
    assert (job["state"], job["image_id"], job["attempts"], job["reason"]) == ("active", img["id"], 1, None)
    assert leftovers(ienv) == [f"data/{img['id']}.raw"]


@pytest.mark.parametrize(
    "sample, args, message",
    [
        ("backing", [], "names a backing file ('/etc/shadow')"),
        ("data-file", [], "names an external data file"),
        ("huge", [], "virtual size 1024.0 TiB (1125899906842624 bytes) is above the limit of 1.0 GiB"),
        ("vmdk-descriptor", [], "a vmdk descriptor file keeps its extents in other files"),
        ("vmdk-delta", [], "the vmdk is a delta disk that depends on a parent file"),
        ("qcow2", ["--disk-format", "vmdk"], "declared vmdk but the data is a qcow2 image"),
        ("raw", ["--disk-format", "qcow2"], "declared qcow2 but the data is a raw image"),
    ],
)
def test_hostile_images_refused_leaving_nothing(
    ienv: StoreEnv, samples: dict[str, Path], sample: str, args: list[str], message: str
) -> None:
    proc = ienv.cli("image", "import", "evil", "--from", str(samples[sample]), *args, check=False)
    line = error_line(proc)
    assert line.startswith("atoll: error: import of evil failed: image refused: ") and message in line
    assert ienv.json("image", "list", "--all") == [] and ienv.json("object", "list") == []
    assert leftovers(ienv) == []
    job = ienv.json("image", "jobs", "evil")
    assert job["state"] == "killed" and message in job["reason"]


def test_bad_input_is_refused_before_queueing(
    ienv: StoreEnv, samples: dict[str, Path], tmp_path: Path
) -> None:
    ienv.cli("image", "import", "deb", "--from", str(samples["qcow2"]))
    cases = [
        (["deb", "--from", str(samples["qcow2"])], "image 'deb' already exists"),
        (["x", "--from", str(tmp_path / "missing.qcow2")], "missing.qcow2 is not a regular file"),
        (["x", "--from", "ftp://example.org/x.qcow2"], "is not a regular file (nor an http/https URL)"),
        (["x", "--from", "http://10.0.0.1/x.qcow2"], "resolves to 10.0.0.1, a loopback, private or reserved"),
    ]
    for args, message in cases:
        assert message in error_line(ienv.cli("image", "import", *args, check=False))
    bad = ienv.cli("image", "import", "bad name", "--from", str(samples["qcow2"]), check=False)
    assert bad.returncode == 2 and "invalid image name" in bad.stderr.decode()
    assert [j["name"] for j in ienv.json("image", "jobs")] == ["deb"]


def test_web_download_then_clone_and_customize(ienv: StoreEnv, httpd: Server, tmp_path: Path) -> None:
    """A real qcow2 of the test image builder, fetched from a local HTTP server (127.0.0.1 allowed in
    the configuration), becomes an image that clones and customizes like any other."""
    from tests.images.build import ImageSpec, build
    from tests.store.test_cli import guest_file

    disk = httpd.root / "built.raw"
    build(ImageSpec(kind="synthetic", table="gpt", fs="ext4", size=64 << 20), disk)
    qemu_img("convert", "-f", "raw", "-O", "qcow2", disk, httpd.root / "built.qcow2")
    httpd.redirects["/latest.qcow2"] = "/built.qcow2"
    img = ienv.json(
        "image", "import", "deb", "--from", f"{httpd.url}/latest.qcow2", "--disk-format", "qcow2",
        "--property", "OSFAMILY=linux", "--property", "ROOT_PARTITION=1", "--property", "USERS=root",
    )  # fmt: skip
    assert img["image"]["properties"]["OSFAMILY"] == "linux"
    assert ienv.json("image", "jobs", "deb")["method"] == "web-download"
    vol = ienv.json("volume", "create", "web1", "--from", "deb", "--size", "128M", "--hostname", "web1")
    tasks = {t["name"]: t["status"] for t in vol["customization"]["tasks"]}
    assert tasks["AssignHostname"] == "ran" and vol["parent"] == img["id"]
    ienv.cli("volume", "snapshot", "web1", "web1-snap")
    out = tmp_path / "snap.raw"
    ienv.cli("object", "download", "web1-snap", str(out))
    assert guest_file(out, "/etc/hostname") == "web1\n"
    ienv.cli("object", "download", "deb", str(tmp_path / "back.raw"))
    assert (tmp_path / "back.raw").read_bytes() == disk.read_bytes()


def test_web_download_refused_addresses(tmp_path: Path, httpd: Server, samples: dict[str, Path]) -> None:
    strict = imports_env(tmp_path / "strict")
    line = error_line(strict.cli("image", "import", "x", "--from", f"{httpd.url}/disk.qcow2", check=False))
    assert "resolves to 127.0.0.1, a loopback, private or reserved address" in line
    allowing = imports_env(tmp_path / "allow", {"allow_networks": ["127.0.0.1/32"]})
    httpd.redirects["/evil"] = "http://169.254.169.254/latest/meta-data/"
    line = error_line(allowing.cli("image", "import", "y", "--from", f"{httpd.url}/evil", check=False))
    assert "download refused: http://169.254.169.254/latest/meta-data/ resolves to 169.254.169.254" in line
    assert leftovers(allowing) == [] and allowing.json("image", "jobs", "y")["state"] == "killed"
    assert httpd.requests == ["/evil"]


def test_untrusted_local_file_is_copied_before_inspection(ienv: StoreEnv, samples: dict[str, Path],
                                                          tmp_path: Path) -> None:  # fmt: skip
    """A file someone else may rewrite between inspection and conversion is copied first."""
    phases: dict[str, list[str | None]] = {}
    for name, uid in (("mine", 0), ("theirs", 65534)):
        src = tmp_path / f"{name}.qcow2"
        src.write_bytes(samples["qcow2"].read_bytes())
        os.chown(src, uid, uid)
        store = ienv.open()
        job = store.imports.submit(name, str(src), method="local-file", runner="cli")
        seen: list[str | None] = []
        done = store.imports.run(job.id, lambda phase, d, t, seen=seen: seen.append(phase) if phase else None)
        assert done.state == "active"
        phases[name] = seen
    assert phases["mine"] == ["inspecting", "converting", "storing", "digest"]
    assert phases["theirs"] == ["copying", "inspecting", "converting", "storing", "digest"]
    assert len(leftovers(ienv)) == 2


def test_killed_cli_import_is_failed_with_a_reason(ienv: StoreEnv, httpd: Server) -> None:
    """SIGKILL half-way through a download: the next look at the jobs fails it, removing its files."""
    env = {**os.environ, "ATOLL_CONFIG": str(ienv.config_path)}
    argv = [
        sys.executable,
        "-m",
        "provider",
        "image",
        "import",
        "x",
        "--from",
        f"{httpd.url}/stall/disk.qcow2",
    ]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            jobs = ienv.json("image", "jobs")
            if jobs and jobs[0]["phase"] == "fetching" and jobs[0]["done"] > 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the import never started fetching")
        assert any(p.startswith("data/.import-") for p in leftovers(ienv))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        httpd.release.set()
    job = ienv.json("image", "jobs", "x")
    assert job["state"] == "killed"
    assert "died; run the import again" in job["reason"]
    assert leftovers(ienv) == [] and ienv.json("object", "list") == []


def test_server_job_resumed_after_restart(ienv: StoreEnv, samples: dict[str, Path]) -> None:
    from provider.catalog import schema as t
    from provider.services.imports_workers import ImportWorkers

    store = ienv.open()
    job = store.imports.submit("deb", str(samples["vdi"]), method="local-file")
    dead = subprocess.Popen(["true"])
    dead.wait()
    scratch = ienv.config.store.path / "data" / f".import-{job.id}.raw"
    scratch.write_bytes(b"half")
    worker = {"host": os.uname().nodename, "pid": dead.pid, "start": "1"}
    with store.catalog.write() as conn:
        conn.execute(t.import_jobs.update().values(state="importing", attempts=1, worker=json.dumps(worker),
                                                   scratch=json.dumps([str(scratch)])))  # fmt: skip
    assert [j.id for j in store.imports.recover()] == [job.id]
    again = store.imports.show(job.id)
    assert again.state == "queued" and again.reason and again.reason.startswith("resumed: the process")
    assert not scratch.exists()
    workers = ImportWorkers(ienv.config, size=1, poll=0.2).start()
    try:
        assert workers.wait_idle(120)
    finally:
        workers.stop()
    done = store.imports.show(job.id)
    assert (done.state, done.attempts) == ("active", 2)
    assert store.images.show("deb").id == done.image_id


def test_server_job_given_up_after_max_attempts(ienv: StoreEnv, samples: dict[str, Path]) -> None:
    from provider.catalog import schema as t

    store = ienv.open()
    job = store.imports.submit("deb", str(samples["vdi"]), method="local-file")
    worker = {"host": os.uname().nodename, "pid": 2**22 + 1, "start": "1"}
    with store.catalog.write() as conn:
        conn.execute(t.import_jobs.update().values(state="importing", attempts=3, worker=json.dumps(worker)))
    store.imports.recover()
    killed = store.imports.show(job.id)
    assert killed.state == "killed" and killed.reason and killed.reason.endswith("gave up after 3 attempts")


def test_workers_run_queued_jobs(ienv: StoreEnv, samples: dict[str, Path]) -> None:
    from provider.services.imports_workers import ImportWorkers

    store = ienv.open()
    jobs = [store.imports.submit(f"img{i}", str(samples[f]), method="local-file")
            for i, f in enumerate(("qcow2", "vmdk", "vhdx", "backing"))]  # fmt: skip
    workers = ImportWorkers(ienv.config, size=2, poll=0.2).start()
    try:
        assert workers.wait_idle(120)
    finally:
        workers.stop()
    states = [store.imports.show(j.id).state for j in jobs]
    assert states == ["active", "active", "active", "killed"]
    assert sorted(r.name for r in store.images.list()) == ["img0", "img1", "img2"]
