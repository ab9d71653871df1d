"""Stale attachments: a daemon killed, a device lost, a host declared dead. Delete explains what holds
the volume and how to release it; fsck finds the stale record and --repair releases it, leaving nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from sqlalchemy import select, update

from provider.catalog import schema as t
from provider.errors import Conflict, InUse, PermissionDenied
from provider.utils.host import HOST
from tests.conftest import StoreEnv
from tests.datapath.conftest import Disks


def _row(env: StoreEnv, rid: str):  # type: ignore[no-untyped-def]
    with env.open().catalog.read() as conn:
        return conn.execute(select(t.attachments).where(t.attachments.c.resource_id == rid)).first()


def _fsck(env: StoreEnv, *args: str) -> dict:  # type: ignore[type-arg]
    proc = env.cli("-o", "json", "fsck", *args, check=False)
    return json.loads(proc.stdout)


def test_attachment_of_a_killed_daemon_is_found_and_repaired(qenv: StoreEnv, qdisks: Disks) -> None:
    vid = qdisks.volume("web")
    qdisks.store.volumes.attach("web")
    row = _row(qenv, vid)
    assert row.pid and row.proc_start, "the serving daemon is recorded"
    os.kill(row.pid, signal.SIGKILL)
    subprocess.run(["sh", "-c", f"while kill -0 {row.pid} 2>/dev/null; do sleep 0.05; done"], check=True)

    refused = qenv.cli("volume", "delete", "web", check=False)
    assert refused.returncode == 1
    assert refused.stderr.decode().strip() == (
        f"atoll: error: volume 'web' is in use: its attachment at {row.device} is stale (its daemon, pid "
        f"{row.pid}, is gone): 'atoll volume detach web' or 'atoll fsck --repair' releases it"
    )
    report = _fsck(qenv)
    assert not report["clean"]
    [finding] = report["findings"]
    assert finding["problem"] == "stale-attachment" and finding["subject"] == vid
    assert f"pid {row.pid}, is gone" in finding["detail"]

    repaired = _fsck(qenv, "--repair")
    assert [f["repaired"] for f in repaired["findings"]] == [True]
    assert _fsck(qenv) == {"checked": 2, "clean": True, "findings": []}
    assert _row(qenv, vid) is None
    qenv.cli("volume", "delete", "web")  # and the leak check finds no daemon, mount or loop device


def test_attachment_whose_loop_device_vanished(denv: StoreEnv, disks: Disks) -> None:
    store = disks.store
    att = store.volumes.attach(disks.image.name)  # raw and read-only on both backends: a loop device
    assert att.device is not None
    subprocess.run(["losetup", "-d", att.device], check=True)
    with pytest.raises(InUse, match="is stale \\(its device or daemon is gone\\)"):
        store.images.delete(disks.image.name)
    report = store.fsck.run(repair=True)
    assert [(f.problem, f.repaired) for f in report.findings] == [("stale-attachment", True)]
    assert store.fsck.run().clean
    store.images.delete(disks.image.name)


def test_healthy_attachments_are_left_alone(denv: StoreEnv, disks: Disks) -> None:
    store = disks.store
    disks.volume("alive")
    att = store.volumes.attach("alive")
    report = store.fsck.run(repair=True)
    assert report.findings == []
    assert store.volumes.attach("alive") == att
    store.volumes.detach("alive")


def _attached_elsewhere(env: StoreEnv, rid: str, host: str) -> None:
    """What a node that crashed while a volume was attached leaves in a shared catalog."""
    with env.open().catalog.write() as conn:
        conn.execute(
            t.attachments.insert().values(
                resource_id=rid, host=host, mode="rw", access="kernelspace", kind="block",
                device="/dev/loop99", uri=None, state="{}", created_at="2026-12-01T00:00:00Z",
            )
        )  # fmt: skip


def test_forgotten_host_releases_its_attachments(qenv: StoreEnv) -> None:
    store = qenv.open()
    vol = store.volumes.create("vm1", size=1 << 20)
    _attached_elsewhere(qenv, vol.id, "node-x")
    refused = qenv.cli("volume", "delete", "vm1", check=False).stderr.decode().strip()
    assert refused == (
        "atoll: error: volume 'vm1' is in use: attached at /dev/loop99 on host node-x since "
        "2026-12-01T00:00:00Z: run 'atoll volume detach vm1' there, "
        "or 'atoll host forget node-x' if it is dead"
    )
    hosts = {h["name"]: h for h in qenv.json("host", "list")}
    assert hosts["node-x"]["state"] == "alive" and hosts["node-x"]["attachments"] == 1
    assert hosts[HOST]["state"] == "this-host"
    assert _fsck(qenv)["clean"], "a live host answers for its own attachments"

    with pytest.raises(PermissionDenied):
        qenv.open("alice").hosts.forget("node-x")
    with pytest.raises(Conflict, match="is this host"):
        store.hosts.forget(HOST)
    assert qenv.cli("host", "forget", "node-x", input=b"n\n", check=False).returncode != 0
    assert qenv.json("host", "forget", "node-x", "--yes") == {"host": "node-x", "released": ["vm1"]}
    hosts = {h["name"]: h for h in qenv.json("host", "list")}
    assert hosts["node-x"]["state"] == "forgotten" and hosts["node-x"]["attachments"] == 0
    qenv.cli("volume", "delete", "vm1")
    assert _fsck(qenv)["clean"]


def test_fsck_repairs_what_a_forgotten_host_left(qenv: StoreEnv) -> None:
    """An interrupted forget, or a record written after it: fsck drops it; the host's unfinished
    operations count as interrupted once it is forgotten."""
    store = qenv.open()
    vol = store.volumes.create("vm2", size=1 << 20)
    half = store.volumes.create("half", size=1 << 20)
    with store.catalog.write() as conn:
        data = {"host": "node-y", "proc_start": "1", "remove_on_abort": [half.locator]}
        conn.execute(
            update(t.resources)
            .where(t.resources.c.id == half.id)
            .values(state="pending", op="create", op_pid=1, op_host="node-y", op_data=json.dumps(data))
        )
    _attached_elsewhere(qenv, vol.id, "node-y")
    assert [f.problem for f in store.fsck.run().findings] == ["in-progress"]
    with store.catalog.write() as conn:
        conn.execute(t.hosts.insert().values(name="node-y", state="forgotten", forgotten_at="x"))
    report = store.fsck.run()
    assert sorted(f.problem for f in report.findings) == ["interrupted", "stale-attachment"]
    assert not report.clean
    assert all(f.repaired for f in store.fsck.run(repair=True).findings)
    assert store.fsck.run().findings == []
    store.volumes.delete("vm2")


def test_fsck_removes_the_reflink_probe_of_a_killed_init(qcow2_env: StoreEnv) -> None:
    store = qcow2_env.open()
    data = qcow2_env.config.store.path / "data"
    dead = data / ".reflink-probe-999999999-abc"  # no such pid
    running = data / f".reflink-probe-{os.getpid()}-def"
    for probe in (dead, running):
        probe.mkdir(parents=True)
        (probe / "a").write_bytes(b"\0" * 4096)
    store.fsck.run(repair=True)
    assert not dead.exists()
    assert running.exists(), "a probe of a live process is left to it"
