"""The unification through the API: an image made by the CLI, its volume's snapshot shown as
``image_type: snapshot`` with ``base_image_ref``, turned into an image by PATCH: same id and bytes."""

from __future__ import annotations

import io
from pathlib import Path

from glanceclient.v2 import client as glance_client

from tests.api.conftest import ApiServer
from tests.conftest import write_disk


def test_image_volume_snapshot_image(api_server: ApiServer, tmp_path: Path) -> None:
    env = api_server.env
    disk = write_disk(tmp_path / "disk.raw", 8 << 20)
    env.cli("object", "upload", "images/seed.raw", str(disk), user="alpha")
    image = env.json("image", "register", "images/seed.raw", "--name", "seed", user="alpha")
    env.cli(
        "volume",
        "create",
        "seed-vol",
        "--from",
        "seed",
        "--size",
        str(8 << 20),
        "--no-customize",
        user="alpha",
    )
    snap = env.json("volume", "snapshot", "seed-vol", "seed-snap", user="alpha")

    gc = glance_client.Client(session=api_server.session("alice"))
    shown = gc.images.get(snap["id"])
    assert shown.id == snap["id"] and shown.owner == "alpha"
    assert shown.image_type == "snapshot" and shown.base_image_ref == image["id"]
    data = b"".join(gc.images.data(snap["id"]))
    assert data == disk.read_bytes()

    gc.images.update(snap["id"], remove_props=["EXCLUDE_ALL_TASKS"])
    after = gc.images.get(snap["id"])
    assert after.id == snap["id"] and "image_type" not in after
    assert env.json("resource", "show", snap["id"])["kind"] == "image"
    assert b"".join(gc.images.data(snap["id"])) == data


def test_delete_of_an_image_that_is_an_object_keeps_the_object(api_server: ApiServer, tmp_path: Path) -> None:
    env = api_server.env
    disk = write_disk(tmp_path / "obj.raw", 1 << 20)
    env.cli("object", "upload", "images/kept.raw", str(disk), user="alpha")
    image = env.json("image", "register", "images/kept.raw", "--name", "kept", user="alpha")
    gc = glance_client.Client(session=api_server.session("alice"))
    gc.images.delete(image["id"])
    left = env.json("resource", "show", image["id"])
    assert left["kind"] == "object" and left["id"] == image["id"]
    assert env.cli("object", "download", "images/kept.raw", "-").stdout == disk.read_bytes()


def test_api_image_is_a_cli_resource(api_server: ApiServer, tmp_path: Path) -> None:
    gc = glance_client.Client(session=api_server.session("alice"))
    image = gc.images.create(name="from-api", disk_format="raw", container_format="bare")
    gc.images.upload(image.id, io.BytesIO(b"\x05" * (1 << 20)))
    env = api_server.env
    vol = env.json(
        "volume", "create", "api-vol", "--from", "from-api", "--size", "2M", "--no-customize", user="alpha"
    )
    assert vol["parent"] == image.id
    assert image.id in {i["id"] for i in env.json("image", "list", user="alpha")}


def test_registering_an_object_by_id_from_a_script(api_server: ApiServer, tmp_path: Path) -> None:
    """``openstack image create --id`` and ``glance image-create --id`` with the object's id, run with a
    standard input that is no terminal (a script): the clients upload it (empty); the image is the object,
    active with the object's size. A byte sent to that image is refused."""
    env = api_server.env
    disk = write_disk(tmp_path / "scripted.raw", 2 << 20)
    for tool, name in (("openstack", "by-osc"), ("glance", "by-glance")):
        made = env.json("object", "upload", f"images/{name}.raw", str(disk), user="alpha")
        if tool == "openstack":
            args = ("image", "create", "--id", made["id"], "--disk-format", "raw", name, "-f", "json")
        else:
            args = ("image-create", "--id", made["id"], "--name", name, "--disk-format", "raw",
                    "--container-format", "bare")  # fmt: skip
        api_server.run_cli("alice", tool, *args, input="")
        gc = glance_client.Client(session=api_server.session("alice"))
        shown = gc.images.get(made["id"])
        assert (shown.status, shown.size, shown.name) == ("active", disk.stat().st_size, name)
        assert b"".join(gc.images.data(made["id"])) == disk.read_bytes()
    refused = api_server.run_cli("alice", "glance", "image-upload", made["id"], input="x", check=False)
    assert refused.returncode != 0 and "uploaded only once" in refused.stderr
    assert b"".join(gc.images.data(made["id"])) == disk.read_bytes()
