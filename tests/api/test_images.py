"""The Image API through python-glanceclient (library and CLI) and openstacksdk on the real server."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from glanceclient import exc as glance_exc
from glanceclient.v2 import client as glance_client

from tests.api.conftest import ApiServer
from tests.api.helpers import data_files, new_image, raw_upload, recorded_sha256, wait_status

DATA = b"".join(i.to_bytes(4, "little") * 256 for i in range(1024)) * 4  # 4 MiB, not all zeros


def glance(api_server: ApiServer, user: str) -> glance_client.Client:
    return glance_client.Client(session=api_server.session(user))


def test_create_upload_download(api_server: ApiServer) -> None:
    gc = glance(api_server, "alice")
    image = gc.images.create(name="roundtrip", disk_format="raw", container_format="bare", os_distro="debian")
    assert image.status == "queued" and image.owner == "alpha" and image.visibility == "shared"
    gc.images.upload(image.id, io.BytesIO(DATA))
    shown = gc.images.get(image.id)
    assert shown.status == "active"
    assert shown.size == len(DATA) == shown.virtual_size
    assert shown.checksum == hashlib.md5(DATA).hexdigest()
    assert shown.os_hash_algo == "sha512" and shown.os_hash_value == hashlib.sha512(DATA).hexdigest()
    assert shown.os_distro == "debian"
    assert b"".join(gc.images.data(image.id)) == DATA
    res = api_server.env.open("alpha").images.show(image.id)  # the same resource through the CLI's service
    assert res.id == image.id and res.size == len(DATA) and res.kind == "image"
    # the resource's own sha256 is read back from the store after the upload was answered
    assert recorded_sha256(api_server, image.id) == hashlib.sha256(DATA).hexdigest()
    with pytest.raises(glance_exc.HTTPConflict):
        gc.images.upload(image.id, io.BytesIO(b"again"))


def test_patch_tags_deactivate_delete(api_server: ApiServer) -> None:
    gc = glance(api_server, "alice")
    image = gc.images.create(name="patched", disk_format="raw", container_format="bare", tags=["a"])
    gc.images.upload(image.id, io.BytesIO(DATA[:65536]))
    gc.images.update(image.id, name="patched2", min_disk=2, hw_disk_bus="virtio")
    gc.images.update(image.id, remove_props=["hw_disk_bus"])
    gc.image_tags.update(image.id, "b")
    gc.image_tags.delete(image.id, "a")
    shown = gc.images.get(image.id)
    assert shown.name == "patched2" and shown.min_disk == 2 and shown.tags == ["b"]
    assert "hw_disk_bus" not in shown
    gc.images.deactivate(image.id)
    assert gc.images.get(image.id).status == "deactivated"
    with pytest.raises(glance_exc.HTTPForbidden):
        b"".join(gc.images.data(image.id))
    gc.images.reactivate(image.id)
    assert b"".join(gc.images.data(image.id)) == DATA[:65536]
    gc.images.delete(image.id)
    with pytest.raises(glance_exc.HTTPNotFound):
        gc.images.get(image.id)


def test_members_across_projects(api_server: ApiServer) -> None:
    alice, bob = glance(api_server, "alice"), glance(api_server, "bob")
    image = alice.images.create(
        name="to-share", disk_format="raw", container_format="bare", visibility="private"
    )
    with pytest.raises(glance_exc.HTTPNotFound):  # another project's private image is 404, not 403
        bob.images.get(image.id)
    with pytest.raises(glance_exc.HTTPForbidden):  # private images have no members
        alice.image_members.create(image.id, "beta")
    alice.images.update(image.id, visibility="shared")
    member = alice.image_members.create(image.id, "beta")
    assert member.status == "pending"
    assert image.id not in {i.id for i in bob.images.list()}
    assert bob.images.get(image.id).id == image.id  # an offered image is readable
    with pytest.raises(glance_exc.HTTPForbidden):  # only the member answers
        alice.image_members.update(image.id, "beta", "accepted")
    bob.image_members.update(image.id, "beta", "accepted")
    assert image.id in {i.id for i in bob.images.list()}
    with pytest.raises(glance_exc.HTTPForbidden):
        bob.images.update(image.id, name="stolen")
    alice.image_members.delete(image.id, "beta")
    with pytest.raises(glance_exc.HTTPNotFound):
        bob.images.get(image.id)


def test_list_filters_sorting_and_paging(api_server: ApiServer) -> None:
    gc = glance(api_server, "anna")
    made = [
        gc.images.create(
            name=f"page-{i:03d}",
            disk_format="raw",
            container_format="bare",
            tags=["even"] if i % 2 == 0 else [],
            flavour=f"f{i % 3}",
        ).id
        for i in range(30)
    ]
    listed = [
        i.name
        for i in gc.images.list(
            filters={"tag": ["even"], "owner": "alpha"}, sort_key="name", sort_dir="asc", page_size=4
        )
    ]
    assert listed == [f"page-{i:03d}" for i in range(0, 30, 2)]
    assert [i.id for i in gc.images.list(filters={"flavour": "f1"}, page_size=3)] == [
        made[i] for i in sorted(range(1, 30, 3), reverse=True)
    ]
    assert [i.name for i in gc.images.list(filters={"name": "page-007"})] == ["page-007"]
    assert {i.status for i in gc.images.list(filters={"status": "queued", "owner": "alpha"})} == {"queued"}


def test_reader_role_cannot_write(api_server: ApiServer) -> None:
    reader = glance(api_server, "carol")
    with pytest.raises(glance_exc.HTTPForbidden):
        reader.images.create(name="nope", disk_format="raw", container_format="bare")


def test_glance_cli_and_openstacksdk(api_server: ApiServer, tmp_path: Path) -> None:
    import openstack

    conn = openstack.connection.Connection(session=api_server.session("bob"))
    src = tmp_path / "disk.raw"
    src.write_bytes(DATA)
    img = conn.image.create_image(
        name="via-sdk", filename=str(src), disk_format="raw", container_format="bare"
    )
    img = conn.image.get_image(img.id)
    assert img.status == "active" and img.size == len(DATA)
    assert img.id in {i.id for i in conn.image.images()}
    v2 = {"OS_IMAGE_API_VERSION": "2"}
    out = api_server.run_cli("bob", "glance", "image-list", env=v2)
    assert "via-sdk" in out.stdout
    dst = tmp_path / "back.raw"
    api_server.run_cli("bob", "glance", "image-download", "--file", str(dst), img.id, env=v2)
    assert dst.read_bytes() == DATA
    conn.image.delete_image(img.id)


def test_client_disconnects_half_way(api_server: ApiServer) -> None:
    token = api_server.token("alice")
    before = data_files(api_server)
    image_id = new_image(api_server, token)
    raw_upload(api_server, token, image_id, declared=2 << 30, send=6 << 20)
    wait_status(api_server, token, image_id, "queued")
    assert data_files(api_server) == before  # no partial data left
    gc = glance_client.Client(session=api_server.session("alice"))
    gc.images.upload(image_id, io.BytesIO(b"\x02" * 4096))  # and the upload can be retried
    assert gc.images.get(image_id).size == 4096
