"""The seeds' workflow across the three services with the standard clients, against the real server:
``swift upload`` → an image with the same id (no upload) → ``openstack volume create --image`` → a snapshot
through the Volume API (an ``image_type: snapshot`` image and an object in ``snapshots``) → PATCH → an image
→ ``os-volume_upload_image`` → an image at once; then deletion in every order."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import swiftclient
from glanceclient import Client as GlanceClient
from glanceclient import exc as glance_exc

from tests.api.conftest import ApiServer, start_server
from tests.customization import verify
from tests.helpers import need_root
from tests.volume_api.conftest import PROPS
from tests.volume_api.test_http import cinder, cli


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    need_root()
    srv = start_server(tmp_path_factory.mktemp("seeds"))
    try:
        yield srv
    finally:
        srv.stop()


def swift_cli(server: ApiServer, user: str, *args: str) -> str:
    auth = [
        "-A",
        server.url + "/auth/v1.0",
        "-U",
        f"{server.projects[user]}:{user}",
        # one argument: a generated password may begin with "-"
        f"--key={server.passwords[user]}",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "swiftclient.shell", *auth, *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_one_resource_through_three_services(server: ApiServer, guest_image: Path) -> None:
    swift_cli(server, "alice", "upload", "--object-name", "guest.raw", "disks", str(guest_image))
    swift = swiftclient.Connection(session=server.session("alice"))
    object_id = swift.head_object("disks", "guest.raw")["x-atoll-id"]
    store = server.env.open("root")
    before = store.resources.get(object_id)
    data = store.backend(before.backend).path(before.locator).stat()

    # the object becomes an image under its own id: active at once, no upload, same data
    glance = GlanceClient("2", session=server.session("alice"))
    image = glance.images.create(
        id=object_id, name="guest", disk_format="raw", container_format="bare", **PROPS
    )
    assert (image.id, image.status, image.size) == (object_id, "active", guest_image.stat().st_size)
    after = store.resources.get(object_id)
    again = store.backend(after.backend).path(after.locator).stat()
    assert (again.st_ino, again.st_mtime_ns, after.sha256) == (data.st_ino, data.st_mtime_ns, before.sha256)
    glance.images.add_location(object_id, "swift://disks/guest.raw", {})  # its own object: accepted
    swift.put_object("disks", "other.raw", b"x" * 4096)
    with pytest.raises(glance_exc.HTTPBadRequest, match="one resource keeps one id"):
        glance.images.add_location(object_id, "swift://disks/other.raw", {})
    with pytest.raises(glance_exc.HTTPConflict):  # an id in use is not made again
        glance.images.create(id=object_id, name="guest-again", disk_format="raw", container_format="bare")

    # image → volume (openstack CLI) → snapshot (Volume API) → image_type snapshot, object in `snapshots`
    made = cli(
        server,
        "alice",
        "openstack",
        "volume",
        "create",
        "--image",
        object_id,
        "--size",
        "2",
        "vm-1",
        "-f",
        "json",
    )
    vol_id = json.loads(made.stdout)["id"]
    c = cinder(server, "alice")
    snap = c.volume_snapshots.create(vol_id, name="vm-1-snap")
    shown = glance.images.get(snap.id)
    assert shown["image_type"] == "snapshot" and shown["base_image_ref"] == object_id
    assert "vm-1-snap" in swift_cli(server, "alice", "list", "snapshots").split()
    assert swift.head_object("snapshots", "vm-1-snap")["x-atoll-id"] == snap.id

    # PATCH away EXCLUDE_ALL_TASKS: an image; then another volume, uploaded to an image at once
    glance.images.update(snap.id, remove_props=["EXCLUDE_ALL_TASKS"])
    assert glance.images.get(snap.id).get("image_type") != "snapshot"
    second = c.volumes.create(2, imageRef=snap.id, name="vm-2")
    _, body = second.upload_to_image(False, "vm-2-golden", "bare", "raw")
    golden = glance.images.get(body["os-volume_upload_image"]["image_id"])
    assert golden.status == "active"

    # delete in every order: ancestors first; the last volume still holds its data; then nothing is left
    for obj in (("disks", "other.raw"),):
        swift.delete_object(*obj)
    server.env.cli("image", "delete", object_id, user="alpha")
    server.env.cli("image", "delete", snap.id, user="alpha")
    c.volumes.delete(vol_id)
    store.volumes.attach(second.id)
    try:
        raw = store.volumes.datapath.attachment(second.id)
        assert raw is not None and raw.path
        with verify.guest_root(Path(raw.path), 1, "ext4") as root:
            assert (root / "etc/hostname").read_text().strip() == "vm-2"
    finally:
        store.volumes.detach(second.id)
    c.volumes.delete(second.id)
    server.env.cli("image", "delete", golden.id, user="alpha")
    with store.catalog.read() as db:
        left = db.exec_driver_sql("SELECT id, state FROM resources WHERE owner = 'alpha'").all()
    assert left == []


def test_swift_put_past_the_object_quota_is_413_and_stores_nothing(server: ApiServer) -> None:
    admin = cinder(server, "admin")
    admin.quotas.update("beta", object_bytes=1 << 20)
    swift = swiftclient.Connection(session=server.session("bob"), retries=0)
    swift.put_container("c")
    swift.put_object("c", "fits", b"a" * (512 << 10))
    for body in (b"b" * (768 << 10), iter([b"b" * (768 << 10)])):  # declared length, then chunked
        # a fresh connection each: the first refusal comes before the server reads the body
        fresh = swiftclient.Connection(session=server.session("bob"), retries=0)
        with pytest.raises(swiftclient.ClientException) as refused:
            fresh.put_object("c", "too-much", body)
        assert refused.value.http_status == 413
    assert [o["name"] for o in swift.get_container("c")[1]] == ["fits"]
    assert cinder(server, "bob").quotas.get("beta", usage=True).object_bytes["in_use"] == 512 << 10
    swift.delete_object("c", "fits")
    admin.quotas.delete("beta")
