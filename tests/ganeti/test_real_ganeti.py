"""Atoll under a real Ganeti 3.0: ExtStorage provider, OS definition, hooks and the RAPI client.

Each test drives Ganeti itself (gnt-instance, gnt-backup, RAPI) against the single-node cluster of
scripts/ganeti-test-cluster.sh, on each file backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from provider.services import Resource
from tests.ganeti import guest
from tests.ganeti.conftest import INSTANCE_PREFIX, GanetiEnv

pytestmark = [pytest.mark.root, pytest.mark.slow]
OS = ["-o", "atoll+default"]


def test_provider_and_os_are_valid(ganeti_env: GanetiEnv) -> None:
    diagnose = ganeti_env.cluster.gnt("gnt-storage", "diagnose").stdout
    assert "atoll" in diagnose and "valid" in diagnose.lower()
    assert "atoll+default" in ganeti_env.cluster.gnt("gnt-os", "list").stdout


@pytest.mark.parametrize(
    ("disk", "message"),
    [
        pytest.param(
            "size=512M,origin=nope", "atoll create: error: source 'nope' not found", id="unknown-origin"
        ),
        pytest.param("size=64M,origin={image}", "is smaller than its source guest", id="smaller-than-image"),
        pytest.param("size=512M,origin={image},orign=x", "unknown disk parameter(s) orign", id="typo"),
    ],
)
def test_bad_disk_requests_fail_clearly_and_leave_nothing(
    ganeti_env: GanetiEnv, disk: str, message: str
) -> None:
    name = INSTANCE_PREFIX + "bad"
    before = {v.id for v in ganeti_env.store_env.open().volumes.list()}
    proc = ganeti_env.add(
        name,
        "-t",
        "ext",
        "--disk",
        f"0:provider=atoll,{disk.format(image=ganeti_env.image)}",
        *OS,
        check=False,
    )
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert name not in ganeti_env.cluster.instances()
    assert {v.id for v in ganeti_env.store_env.open().volumes.list()} == before


def test_origin_that_is_a_volume_is_refused(ganeti_env: GanetiEnv) -> None:
    store = ganeti_env.store_env.open()
    store.volumes.create("scratch-vol", size=512 << 20)
    try:
        disk = "0:size=512M,provider=atoll,origin=scratch-vol"
        proc = ganeti_env.add(INSTANCE_PREFIX + "bad", "-t", "ext", "--disk", disk, *OS, check=False)
        assert proc.returncode != 0
        assert "'scratch-vol' is a volume: clone a snapshot of it" in proc.stdout + proc.stderr
        assert [v.name for v in store.volumes.list()] == ["scratch-vol"]
    finally:
        store.volumes.delete("scratch-vol")


def test_os_verify_rejects_bad_parameters(ganeti_env: GanetiEnv) -> None:
    params = "img_id=guest,hostname=bad_name!"
    proc = ganeti_env.add(
        INSTANCE_PREFIX + "bad", "-t", "file", "--disk", "0:size=512M", *OS, "-O", params, check=False
    )
    assert proc.returncode != 0
    assert "hostname 'bad_name!' is not valid" in proc.stdout + proc.stderr


def test_file_disk_gets_the_image_copied_then_customized(ganeti_env: GanetiEnv) -> None:
    """The snf-image way, for disks that are not Atoll clones: OS create copies the image, then customizes."""
    name = INSTANCE_PREFIX + "file"
    ganeti_env.add(
        name, "-t", "file", "--disk", "0:size=512M", *OS, "-O", f"img_id={ganeti_env.image}", "--no-start"
    )
    files = list(Path("/srv/ganeti/file-storage").glob(f"{name}/*"))
    assert len(files) == 1
    assert guest.read_file(files[0], "/etc/hostname").strip() == name
    assert guest.root_partition_end(files[0]) > 400 << 20  # grown from the 256 MiB image to the disk
    ganeti_env.cluster.remove_instance(name)


def _activate(ganeti_env: GanetiEnv, name: str) -> str:
    """Activate the instance's disks (Ganeti runs attach); return disk 0's device."""
    out = ganeti_env.cluster.gnt("gnt-instance", "activate-disks", name).stdout
    return out.strip().splitlines()[-1].rsplit(":", 1)[-1]


def _volume(ganeti_env: GanetiEnv) -> Resource:
    (vol,) = ganeti_env.ganeti_volumes()
    return vol


def test_instance_lifecycle(ganeti_env: GanetiEnv, ssh_public_key: str) -> None:
    cluster, name = ganeti_env.cluster, INSTANCE_PREFIX + "life"
    secret = "Sup3r-secret-passw0rd"
    ganeti_env.add(
        name,
        "-t",
        "ext",
        "--disk",
        f"0:size=512M,provider=atoll,origin={ganeti_env.image}",
        *OS,
        "-O",
        f"auth_keys={ssh_public_key}",
        "--os-parameters-secret",
        f"img_passwd={secret}",
    )
    store = ganeti_env.store_env.open()
    vol = _volume(ganeti_env)
    image = store.images.show(ganeti_env.image)
    assert vol.parent == image.id and vol.size == 512 << 20  # a thin clone of the image
    assert vol.volume is not None and vol.volume.ganeti["instance"] == name
    assert vol.volume.ganeti["VOL_NAME"] == vol.name and vol.volume.ganeti["VOL_UUID"]
    assert ganeti_env.read("/etc/hostname").strip() == name
    assert ssh_public_key in ganeti_env.read("/root/.ssh/authorized_keys")
    assert ganeti_env.read("/etc/shadow").startswith("root:$6$")
    assert (
        secret
        not in subprocess.run(
            ["grep", "-r", secret, "/var/log/ganeti"], capture_output=True, text=True
        ).stdout
    )

    cluster.gnt("gnt-instance", "stop", name)
    cluster.gnt("gnt-instance", "start", name)

    # grow-disk of a stopped instance: the volume grows, then the hook grows partition and filesystem
    cluster.gnt("gnt-instance", "stop", name)
    cluster.gnt("gnt-instance", "grow-disk", name, "0", "256M")
    assert store.volumes.show(vol.id).size == 768 << 20
    with ganeti_env.disk() as disk:
        assert guest.root_partition_end(disk) > 760 << 20
        guest.assert_fs_fills_partition(disk)

    # export of a running instance: snapshot, attach of <VOL_NAME>.snap, then the snapshot is removed
    cluster.gnt("gnt-instance", "start", name)
    cluster.gnt("gnt-backup", "export", "-n", cluster.node, name)
    dumps = [p for p in Path("/var/lib/ganeti/export", name).iterdir() if p.name != "config.ini"]
    assert len(dumps) == 1 and guest.read_file(dumps[0], "/etc/hostname").strip() == name
    assert not [r for r in store.images.list(include_snapshots=True) if r.name.endswith(".snap")]
    cluster.gnt("gnt-backup", "remove", name)

    # reinstall: a fresh clone of the origin again, no data copied, customized again (the secret
    # password is not kept by Ganeti, so root's password is the image's again; the public parameters are)
    cluster.gnt("gnt-instance", "stop", name)
    before = store.volumes.show(vol.id)
    cluster.gnt("gnt-instance", "reinstall", "-f", "-O", "hostname=reborn", name)
    again = store.volumes.show(vol.id)
    assert again.parent == vol.parent and again.size == 768 << 20
    if again.backend == "qcow2":  # a new top over the origin; the copy path would keep the old top
        assert again.locator != before.locator
        assert not store.backend(again.backend).path(before.locator).exists()
    assert _activate(ganeti_env, name).startswith("/dev/")
    assert ganeti_env.read("/etc/hostname").strip() == "reborn"
    assert ganeti_env.read("/etc/shadow").startswith("root:*:")
    assert ssh_public_key in ganeti_env.read("/root/.ssh/authorized_keys")
    cluster.gnt("gnt-instance", "deactivate-disks", name)

    new_name = INSTANCE_PREFIX + "renamed"
    cluster.gnt("gnt-instance", "rename", "--no-name-check", "--no-ip-check", "-f", name, new_name)
    vol = _volume(ganeti_env)
    assert vol.volume is not None and vol.volume.ganeti["instance"] == new_name

    cluster.gnt("gnt-instance", "remove", "-f", new_name)
    assert ganeti_env.ganeti_volumes() == []


def test_rapi_client_creates_an_instance(ganeti_env: GanetiEnv, ssh_public_key: str, tmp_path: Path) -> None:
    name = INSTANCE_PREFIX + "rapi"
    ganeti_env.cluster.remove_instance(name)
    (tmp_path / "key.pub").write_text(ssh_public_key + "\n")
    env = {
        **os.environ,
        **ganeti_env.cluster.rapi_env(),
        "ATOLL_CONFIG": str(ganeti_env.store_env.config_path),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "provider",
            "ganeti",
            "create-instance",
            name,
            "--image",
            ganeti_env.image,
            "--size",
            "512M",
            "--hostname",
            "from-rapi",
            "--ssh-key",
            str(tmp_path / "key.pub"),
            "--node",
            ganeti_env.cluster.node,
            "--no-name-check",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"instance {name} created by job ")
    assert "job success" in proc.stderr and "* creating instance disks..." in proc.stderr
    assert ganeti_env.read("/etc/hostname").strip() == "from-rapi"
    ganeti_env.cluster.remove_instance(name)
    assert ganeti_env.ganeti_volumes() == []


def test_rapi_client_shows_ganeti_errors(ganeti_env: GanetiEnv) -> None:
    name = INSTANCE_PREFIX + "rapibad"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "provider",
            "ganeti",
            "create-instance",
            name,
            "--image",
            "no-such-image",
            "--size",
            "512M",
            "--node",
            ganeti_env.cluster.node,
            "--no-name-check",
        ],
        env={**os.environ, **ganeti_env.cluster.rapi_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "atoll create: error: source 'no-such-image' not found" in proc.stderr
    assert name not in ganeti_env.cluster.instances()
