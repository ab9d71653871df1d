"""Glance's interoperable import on the real server: glance-direct through python-glanceclient,
web-download through openstacksdk from a local HTTP server (127.0.0.1 allowed in the configuration),
hostile images and refused addresses failing with the reason and leaving nothing behind."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from glanceclient import exc as glance_exc
from glanceclient.v2 import client as glance_client

from tests.api.conftest import ApiServer, start_server
from tests.api.helpers import data_files, new_image
from tests.imaging.conftest import build_samples, qemu_img
from tests.imaging.httpd import Server, serve


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    imports = {"allow_networks": ["127.0.0.1/32"], "max_virtual_size": "1G", "workers": 2}
    srv = start_server(tmp_path_factory.mktemp("api-import"), extra={"imports": imports})
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def httpd(samples: dict[str, Path]) -> Iterator[Server]:
    with serve(samples["raw"].parent) as http:
        yield http


def glance(server: ApiServer, user: str = "alice") -> glance_client.Client:
    return glance_client.Client(session=server.session(user))


def tasks(server: ApiServer, image_id: str, user: str = "alice") -> list[dict[str, Any]]:
    resp = requests.get(
        f"{server.url}/v2/images/{image_id}/tasks", headers={"X-Auth-Token": server.token(user)}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    return list(resp.json()["tasks"])


def settle(server: ApiServer, image_id: str, user: str = "alice") -> dict[str, Any]:
    """Wait until the image's last import task has finished; return that task."""
    for _ in range(600):
        found = tasks(server, image_id, user)
        if found and found[-1]["status"] in ("success", "failure"):
            return found[-1]
        time.sleep(0.2)
    raise AssertionError(f"the import of {image_id} never finished")


def test_import_info(server: ApiServer) -> None:
    info = glance(server).images.get_import_info()
    assert info["import-methods"]["value"] == ["glance-direct", "web-download"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(raw, qcow2) of a GPT disk with a synthetic Linux tree from the test image builder."""
    from tests.images.build import ImageSpec, build

    d = tmp_path_factory.mktemp("built")
    build(ImageSpec(kind="synthetic", table="gpt", fs="ext4", size=64 << 20), d / "disk.raw")
    qemu_img("convert", "-f", "raw", "-O", "qcow2", d / "disk.raw", d / "disk.qcow2")
    return d / "disk.raw", d / "disk.qcow2"


def test_glance_direct_qcow2_clones_and_customizes(server: ApiServer, built: tuple[Path, Path]) -> None:
    from tests.store.test_cli import guest_file

    raw_path, qcow2 = built
    gc = glance(server)
    image = gc.images.create(name="direct", disk_format="qcow2", container_format="bare",
                             OSFAMILY="linux", ROOT_PARTITION="1", USERS="root")  # fmt: skip
    with open(qcow2, "rb") as f:
        gc.images.stage(image.id, f)
    assert gc.images.get(image.id).status == "uploading"
    gc.images.image_import(image.id, method="glance-direct")
    task = settle(server, image.id)
    assert (task["status"], task["result"]) == ("success", {"image_id": image.id})
    (listed,) = gc.images.get_associated_image_tasks(image.id)["tasks"]  # glanceclient asks for v2.12
    assert (listed["id"], listed["status"]) == (task["id"], "success")
    assert "success" in server.run_cli("alice", "glance", "image-tasks", image.id).stdout
    shown = gc.images.get(image.id)
    raw = raw_path.read_bytes()
    assert (shown.status, shown.disk_format, shown.size, shown.virtual_size) == (
        "active",
        "raw",
        len(raw),
        len(raw),
    )
    for _ in range(100):  # the digests are filled in just after the image turns active
        if gc.images.get(image.id).checksum:
            break
        time.sleep(0.2)
    assert gc.images.get(image.id).checksum == hashlib.md5(raw).hexdigest()
    assert b"".join(gc.images.data(image.id)) == raw
    assert not [p for p in data_files(server) if p.startswith(".")], "no staged or scratch file is left"
    env = server.env
    vol = env.json("volume", "create", "web1", "--from", image.id, "--size", "128M", "--hostname", "web1")
    assert vol["parent"] == image.id
    assert {t["name"]: t["status"] for t in vol["customization"]["tasks"]}["AssignHostname"] == "ran"
    env.cli("volume", "snapshot", "web1", "web1-snap")
    out = raw_path.with_name("snap.raw")
    env.cli("object", "download", "web1-snap", str(out))
    assert guest_file(out, "/etc/hostname") == "web1\n"


def test_web_download_with_openstacksdk(server: ApiServer, httpd: Server, samples: dict[str, Path]) -> None:
    import openstack

    conn = openstack.connection.Connection(session=server.session("bob"))
    image = conn.image.create_image(name="fetched", disk_format="vmdk", container_format="bare")
    httpd.redirects["/fetch-me"] = "/disk.vmdk"
    conn.image.import_image(image, method="web-download", uri=f"{httpd.url}/fetch-me")
    task = settle(server, image.id, "bob")
    assert task["status"] == "success", task["message"]
    got = conn.image.get_image(image.id)
    assert got.status == "active"
    assert got.disk_format == "raw" and got.size == samples["raw"].stat().st_size
    assert (
        b"".join(conn.image.download_image(got, stream=True).iter_content(1 << 20))
        == samples["raw"].read_bytes()
    )


def test_upload_of_a_qcow2_is_imported(server: ApiServer, samples: dict[str, Path]) -> None:
    """PUT /file of a qcow2 (openstack image create --file x.qcow2 --disk-format qcow2): staged and
    converted by the import workers, active as raw; a hostile one fails with the reason, back to queued."""
    import openstack

    conn = openstack.connection.Connection(session=server.session("bob"))
    made = conn.image.create_image(
        name="uploaded-qcow2", filename=str(samples["qcow2"]), disk_format="qcow2", container_format="bare"
    )
    got = conn.image.wait_for_status(conn.image.get_image(made.id), "active", wait=120)
    assert (got.disk_format, got.size) == ("raw", samples["raw"].stat().st_size)
    assert b"".join(conn.image.download_image(got, stream=True).iter_content(1 << 20)) == (
        samples["raw"].read_bytes()
    )
    imported = conn.image.create_image(  # openstack image create --import: stage, then glance-direct
        name="imported-qcow2",
        filename=str(samples["qcow2"]),
        disk_format="qcow2",
        container_format="bare",
        use_import=True,
    )
    got = conn.image.wait_for_status(conn.image.get_image(imported.id), "active", wait=120)
    assert (got.disk_format, got.size) == ("raw", samples["raw"].stat().st_size)
    gc = glance(server)
    vhd = gc.images.create(disk_format="vhd", container_format="bare")  # Glance's name of QEMU's vpc
    with open(samples["vpc"], "rb") as f:
        gc.images.upload(vhd.id, f)
    assert settle(server, vhd.id)["status"] == "success" and gc.images.get(vhd.id).disk_format == "raw"
    ami = gc.images.create(disk_format="ami", container_format="ami")
    with pytest.raises(glance_exc.HTTPBadRequest, match="disk_format ami cannot be stored"):
        gc.images.upload(ami.id, io.BytesIO(b"x"))
    before = data_files(server)
    image = gc.images.create(disk_format="qcow2", container_format="bare")
    with open(samples["backing"], "rb") as f:
        gc.images.upload(image.id, f)
    task = settle(server, image.id)
    assert task["status"] == "failure" and "names a backing file ('/etc/shadow')" in task["message"]
    assert gc.images.get(image.id).status == "queued" and data_files(server) == before


@pytest.mark.parametrize(
    "sample, fmt, message",
    [
        ("backing", "qcow2", "names a backing file ('/etc/shadow')"),
        ("data-file", "qcow2", "names an external data file"),
        ("huge", "qcow2", "virtual size 1024.0 TiB (1125899906842624 bytes) is above the limit of 1.0 GiB"),
        ("qcow2", "vhdx", "declared vhdx but the data is a qcow2 image"),
    ],
)
def test_hostile_images_fail_with_the_reason(
    server: ApiServer, samples: dict[str, Path], sample: str, fmt: str, message: str
) -> None:
    gc = glance(server)
    before = data_files(server)
    image = gc.images.create(disk_format=fmt, container_format="bare")
    with open(samples[sample], "rb") as f:
        gc.images.stage(image.id, f)
    gc.images.image_import(image.id, method="glance-direct")
    task = settle(server, image.id)
    assert task["status"] == "failure" and message in task["message"]
    assert gc.images.get(image.id).status == "queued"
    assert data_files(server) == before


def test_web_download_refused_addresses(server: ApiServer, httpd: Server) -> None:
    gc = glance(server)
    image = gc.images.create(disk_format="qcow2", container_format="bare")
    with pytest.raises(glance_exc.HTTPBadRequest) as err:
        gc.images.image_import(
            image.id, method="web-download", uri="http://169.254.169.254/latest/meta-data/"
        )
    assert "a loopback, private or reserved address" in str(err.value)
    httpd.redirects["/sneaky"] = "http://10.0.0.1/disk.qcow2"
    gc.images.image_import(image.id, method="web-download", uri=f"{httpd.url}/sneaky")
    task = settle(server, image.id)
    assert task["status"] == "failure"
    assert "download refused: http://10.0.0.1/disk.qcow2 resolves to 10.0.0.1" in task["message"]
    assert gc.images.get(image.id).status == "queued"


def test_bad_requests(server: ApiServer, samples: dict[str, Path]) -> None:
    token = server.token("alice")
    image_id = new_image(server, token, disk_format="qcow2")
    url = f"{server.url}/v2/images/{image_id}"
    head = {"X-Auth-Token": token}
    cases = [
        (requests.post(f"{url}/import", json={"method": {"name": "copy-image"}}, headers=head), 400,
         "import method 'copy-image' is not one of glance-direct, web-download"),
        (requests.post(f"{url}/import", json={"method": {"name": "glance-direct"}}, headers=head), 409,
         "is queued: only a uploading image can"),
        (requests.put(f"{url}/stage", data=b"x", headers={**head, "Content-Type": "text/plain"}), 415,
         "content type 'text/plain' is not supported"),
        (requests.put(f"{url}/stage", data=b"x", headers={"X-Auth-Token": server.token("bob"),
         "Content-Type": "application/octet-stream"}), 404, "not found"),
        (requests.post(f"{url}/import", data=b"{", headers={**head, "Content-Type": "application/json"}), 400,
         "malformed JSON"),
    ]  # fmt: skip
    for resp, status, message in cases:
        assert resp.status_code == status, resp.text
        assert message in resp.json()["error"]["message"]
    ami = new_image(server, token, disk_format="ami", container_format="ami")
    resp = requests.post(f"{server.url}/v2/images/{ami}/import", headers=head,
                         json={"method": {"name": "web-download", "uri": "http://127.0.0.1/x"}})  # fmt: skip
    assert (
        resp.status_code == 400 and "disk format 'ami' cannot be imported" in resp.json()["error"]["message"]
    )


def test_each_job_ran_once(server: ApiServer) -> None:
    """Two server processes, two pools: no job was taken twice (a claim is one conditional UPDATE and a
    live worker is never mistaken for a dead one), and nothing failed unexpectedly."""
    log = server.log()
    assert "Traceback" not in log and "internal error" not in log
    taken = [
        line.split("worker takes import ")[1].split()[0]
        for line in log.splitlines()
        if "worker takes" in line
    ]
    assert taken and len(taken) == len(set(taken))
