"""The Volume API through the real server (``atoll serve`` under gunicorn) with the real clients:
python-cinderclient (library and ``cinder`` CLI), the ``openstack`` CLI and openstacksdk."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
import requests
from cinderclient import client as cinder_client
from cinderclient import exceptions as cinder_exc

from tests.api.conftest import ApiServer, start_server
from tests.customization import verify
from tests.helpers import need_root
from tests.volume_api.conftest import PROPS

GIB = 1 << 30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    need_root()  # attachments make loop devices
    srv = start_server(tmp_path_factory.mktemp("volume-api"))
    try:
        yield srv
    finally:
        srv.stop()


def cinder(server: ApiServer, user: str, version: str = "3.60") -> Any:
    return cinder_client.Client(version, session=server.session(user))


def sdk(server: ApiServer, user: str) -> openstack.connection.Connection:
    return openstack.connection.Connection(session=server.session(user))


def volume_url(server: ApiServer, user: str) -> str:
    url = server.session(user).get_endpoint(service_type="block-storage", interface="public")
    assert url
    return str(url)


def cli(
    server: ApiServer, user: str, tool: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The ``openstack`` or ``cinder`` command line, authenticated as ``user`` by password."""
    return server.run_cli(user, tool, *args, check=check, env={"OS_VOLUME_API_VERSION": "3.60"})


def add_guest_image(server: ApiServer, guest_image: Path, name: str, project: str = "alpha") -> str:
    """Upload and register the test disk through the CLI as ``project``; return the image id."""
    server.env.cli("object", "upload", f"images/{name}.raw", str(guest_image), user=project)
    props = [a for k, v in PROPS.items() for a in ("--property", f"{k}={v}")]
    shown = server.env.json("image", "register", f"images/{name}.raw", "--name", name, *props, user=project)
    return str(shown["id"])


# ---- discovery, microversions ---------------------------------------------------------------------------
def test_version_discovery_catalog_and_microversions(server: ApiServer) -> None:
    root = requests.get(server.url + "/volume/", timeout=10)
    assert root.status_code == 300
    (doc,) = root.json()["versions"]
    assert (doc["id"], doc["min_version"], doc["version"]) == ("v3.0", "3.0", "3.60")
    assert requests.get(server.url + "/volume/v3", timeout=10).json()["version"]["version"] == "3.60"

    sess = server.session("alice")
    for service_type in ("block-storage", "volumev3"):
        url = sess.get_endpoint(service_type=service_type, interface="public")
        assert url == f"{server.url}/volume/v3/alpha"
    base = volume_url(server, "alice")
    ok = sess.get(base + "/volumes", headers={"OpenStack-API-Version": "volume 3.27"})
    assert ok.headers["OpenStack-API-Version"] == "volume 3.27" and ok.json() == {"volumes": []}
    assert sess.get(base + "/volumes").headers["OpenStack-API-Version"] == "volume 3.0"
    latest = sess.get(base + "/volumes", headers={"OpenStack-API-Version": "volume latest"})
    assert latest.headers["OpenStack-API-Version"] == "volume 3.60"
    for header, status in (("volume 4.0", 406), ("volume 3.999", 406), ("volume three", 400)):
        bad = sess.get(base + "/volumes", headers={"OpenStack-API-Version": header}, raise_exc=False)
        assert bad.status_code == status, header
        assert bad.json()["error"]["message"]
    # attachments exist from 3.27 on
    old = sess.get(base + "/attachments", headers={"OpenStack-API-Version": "volume 3.26"}, raise_exc=False)
    assert old.status_code == 404
    # a token for project alpha cannot use beta's URL
    other = sess.get(base.replace("/alpha", "/beta") + "/volumes", raise_exc=False)
    assert other.status_code == 403
    assert requests.get(base + "/volumes", timeout=10).status_code == 401


# ---- volumes with cinderclient --------------------------------------------------------------------------
def test_cinderclient_volume_lifecycle(server: ApiServer) -> None:
    c = cinder(server, "alice")
    vol = c.volumes.create(1, name="data1", description="first", metadata={"tier": "gold"})
    assert (vol.status, vol.size, vol.name, vol.metadata) == ("available", 1, "data1", {"tier": "gold"})
    assert [v.id for v in c.volumes.list()] == [vol.id]
    assert [v.id for v in c.volumes.list(search_opts={"metadata": {"tier": "gold"}})] == [vol.id]
    assert c.volumes.list(search_opts={"name": "nope"}) == []

    c.volumes.update(vol, name="data2", description="renamed")
    c.volumes.set_metadata(vol, {"owner": "ops"})
    c.volumes.delete_metadata(vol, ["tier"])
    shown = c.volumes.get(vol.id)
    assert (shown.name, shown.description, shown.metadata) == ("data2", "renamed", {"owner": "ops"})

    c.volumes.extend(vol, 2)
    assert c.volumes.get(vol.id).size == 2
    with pytest.raises(cinder_exc.BadRequest, match="must be larger"):
        c.volumes.extend(vol, 1)
    with pytest.raises(cinder_exc.BadRequest, match="secret"):
        c.volumes.create(1, metadata={"admin_password": "hunter2"})

    clone = c.volumes.create(3, source_volid=vol.id, name="data2-copy")
    assert (clone.source_volid, clone.size) == (vol.id, 3)
    for v in (vol, clone):
        c.volumes.delete(v)
    assert c.volumes.list() == []


def test_paging_with_next_links(server: ApiServer) -> None:
    c = cinder(server, "anna")  # same project as alice: the listing is the project's
    made = [c.volumes.create(1, name=f"page{i}").id for i in range(5)]
    base = volume_url(server, "anna")
    sess = server.session("anna")
    seen: list[str] = []
    url: str | None = base + "/volumes/detail?limit=2&sort=name:asc"
    while url:
        body = sess.get(url).json()
        seen += [v["name"] for v in body["volumes"]]
        url = next((link["href"] for link in body.get("volumes_links", []) if link["rel"] == "next"), None)
    assert seen == [f"page{i}" for i in range(5)]
    bad = sess.get(base + "/volumes?limit=-1", raise_exc=False)
    assert bad.status_code == 400
    for vid in made:
        c.volumes.delete(vid)


def test_quotas_413_and_admin_updates(server: ApiServer) -> None:
    admin = cinder(server, "admin")
    admin.quotas.update("beta", volumes=1, gigabytes=3)
    c = cinder(server, "bob")
    q = c.quotas.get("beta", usage=True)
    assert q.volumes["limit"] == 1 and q.volumes["in_use"] == 0
    first = c.volumes.create(2, name="only")
    with pytest.raises(cinder_exc.OverLimit, match="volumes of project beta"):
        c.volumes.create(1, name="second")
    admin.quotas.update("beta", volumes=5)
    with pytest.raises(cinder_exc.OverLimit, match="gigabytes"):
        c.volumes.create(2, name="too-big")
    assert [v.name for v in c.volumes.list()] == ["only"]  # nothing was created
    with pytest.raises(cinder_exc.Forbidden):
        c.quotas.update("beta", volumes=100)
    assert admin.quotas.defaults("beta").volumes == 10
    c.volumes.delete(first)
    admin.quotas.delete("beta")
    assert c.quotas.get("beta").volumes == 10


def test_other_projects_ids_are_404(server: ApiServer) -> None:
    mine = cinder(server, "alice")
    vol = mine.volumes.create(1, name="private")
    snap = mine.volume_snapshots.create(vol.id, name="private-snap")
    theirs = cinder(server, "bob")
    for call in (
        lambda: theirs.volumes.get(vol.id),
        lambda: theirs.volumes.delete(vol.id),
        lambda: theirs.volumes.extend(vol.id, 5),
        lambda: theirs.volume_snapshots.get(snap.id),
        lambda: theirs.volumes.create(1, snapshot_id=snap.id),
        lambda: theirs.volumes.create(1, source_volid=vol.id),
    ):
        with pytest.raises(cinder_exc.NotFound):
            call()
    mine.volume_snapshots.delete(snap)
    mine.volumes.delete(vol)


# ---- attachments with openstacksdk ----------------------------------------------------------------------
def test_attachments_and_refusals_with_openstacksdk(server: ApiServer) -> None:
    conn = sdk(server, "alice")
    vol = conn.block_storage.create_volume(size=1, name="attached")
    att = conn.block_storage.create_attachment(vol, connector={"platform": "x86_64"}, instance="inst-1")
    assert att.status == "attaching" and att.connection_info["driver_volume_type"] == "local"
    device = att.connection_info["data"]["device_path"]
    assert device.startswith("/dev/loop") and os.path.exists(device)
    conn.block_storage.complete_attachment(att)
    assert conn.block_storage.get_volume(vol).status == "in-use"
    # the data path's record is the CLI's too
    shown = server.env.json("volume", "show", vol.id, user="alpha")
    assert shown["id"] == vol.id

    c = cinder(server, "alice")
    with pytest.raises(cinder_exc.ClientException) as refused:
        c.volumes.delete(vol.id)
    assert refused.value.code == 409 and "detach it" in str(refused.value)
    with pytest.raises(cinder_exc.ClientException, match="force"):
        c.volume_snapshots.create(vol.id)
    snap = c.volume_snapshots.create(vol.id, force=True, name="live")  # point-in-time, live
    c.volumes.extend(vol.id, 2)  # live grow through the data path (3.42+)
    assert c.volumes.get(vol.id).size == 2
    with pytest.raises(cinder_exc.BadRequest, match=r"3\.42"):
        cinder(server, "alice", "3.40").volumes.extend(vol.id, 3)

    conn.block_storage.delete_attachment(att)
    assert conn.block_storage.get_volume(vol).status == "available"
    assert server.env.open("root").volumes.datapath.attachment(vol.id) is None  # what attach made is gone
    c.volume_snapshots.delete(snap)
    c.volumes.delete(vol.id)


# ---- the seeds' workflow through three services ----------------------------------------------------------
def test_image_volume_snapshot_image_workflow(server: ApiServer, guest_image: Path) -> None:
    image_id = add_guest_image(server, guest_image, "guest")
    made = json.loads(
        cli(server, "alice", "openstack", "volume", "create", "--image", image_id, "--size", "2", "web-1",
            "-f", "json").stdout
    )  # fmt: skip
    assert made["status"] == "available" and made["bootable"] in ("true", True)
    vol_id = made["id"]
    c = cinder(server, "alice")
    assert c.volumes.get(vol_id).volume_image_metadata["image_id"] == image_id

    # snapshot through the Volume API: at once an image_type snapshot in the Image API, same id
    snap = c.volume_snapshots.create(vol_id, name="web-1-monday")
    image_url = server.session("alice").get_endpoint(service_type="image", interface="public")
    as_image = server.session("alice").get(f"{image_url}/v2/images/{snap.id}").json()
    assert as_image["image_type"] == "snapshot" and as_image["base_image_ref"] == image_id
    # PATCH away EXCLUDE_ALL_TASKS: an image (metadata only)
    patched = server.session("alice").patch(
        f"{image_url}/v2/images/{snap.id}",
        json=[{"op": "remove", "path": "/EXCLUDE_ALL_TASKS"}],
        headers={"Content-Type": "application/openstack-images-v2.1-json-patch"},
    )
    assert patched.status_code == 200 and patched.json().get("image_type") != "snapshot"
    with pytest.raises(cinder_exc.NotFound):  # no longer a Volume API snapshot
        c.volume_snapshots.get(snap.id)

    # another volume, from the new image, uploaded to an image at once (snapshot + registration)
    second = c.volumes.create(2, imageRef=snap.id, name="web-2")
    assert c.volumes.get(second.id).volume_image_metadata["image_name"] == "web-1-monday"
    _, body = second.upload_to_image(False, "web-2-golden", "bare", "raw")
    uploaded = body["os-volume_upload_image"]
    golden = server.session("alice").get(f"{image_url}/v2/images/{uploaded['image_id']}").json()
    assert golden["status"] == "active" and golden["name"] == "web-2-golden"

    # delete in every order: what something depends on stays until nothing does
    store = server.env.open("root")
    for gone in (image_id, snap.id):  # web-2's ancestors go first (through the CLI: data and views)
        server.env.cli("image", "delete", gone, user="alpha")
    c.volumes.delete(vol_id)
    conn = sdk(server, "alice")
    att = conn.block_storage.create_attachment(second.id, connector={"platform": "x86_64"})
    try:
        raw = store.volumes.datapath.attachment(second.id)
        assert raw is not None and raw.path
        with verify.guest_root(Path(raw.path), 1, "ext4") as root:  # the data is all there
            assert (root / "etc/hostname").read_text().strip() == "web-2"
    finally:
        conn.block_storage.delete_attachment(att)
    c.volumes.delete(second.id)
    server.env.cli("image", "delete", uploaded["image_id"], user="alpha")
    with store.catalog.read() as db:
        left = db.exec_driver_sql("SELECT id, state FROM resources WHERE owner = 'alpha'").all()
    assert left == []  # nothing left once nothing depends on it


def test_cinder_cli_and_failed_customization(server: ApiServer, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.raw"
    with open(garbage, "wb") as f:
        f.truncate(64 << 20)  # OSFAMILY=linux but no partition table: the image's growth task fails
    image_id = add_guest_image(server, garbage, "broken")
    out = cli(server, "alice", "cinder", "create", "--image", image_id, "--name", "doomed", "1").stdout
    assert "error" in out
    c = cinder(server, "alice")
    (failed,) = [v for v in c.volumes.list() if v.name == "doomed"]
    assert failed.status == "error" and failed.error_reason
    assert server.env.json("volume", "list", user="alpha") == []  # no volume was left
    _failure_message(server, failed.id, failed.error_reason)
    cli(server, "alice", "cinder", "delete", failed.id)
    assert [v for v in c.volumes.list() if v.name == "doomed"] == []
    listed = cli(server, "alice", "cinder", "list").stdout
    assert "doomed" not in listed

    # attach and detach with the cinder CLI (Cinder's attachments API)
    vol = c.volumes.create(1, name="cli-disk")
    made = cli(
        server, "alice", "cinder", "attachment-create", "--connect", "True", "cli-disk", "inst-9"
    ).stdout
    assert "device_path" in made and "/dev/loop" in made
    (att,) = c.attachments.list(search_opts={"volume_id": vol.id})
    assert c.volumes.get(vol.id).status == "attaching"
    cli(server, "alice", "cinder", "attachment-complete", att.id)
    assert c.volumes.get(vol.id).status == "in-use"
    cli(server, "alice", "cinder", "attachment-delete", att.id)
    assert c.volumes.get(vol.id).status == "available"
    c.volumes.delete(vol.id)


def test_bad_input_gets_clear_errors_and_changes_nothing(server: ApiServer) -> None:
    sess = server.session("alice")
    base = volume_url(server, "alice")
    v360 = {"OpenStack-API-Version": "volume 3.60"}
    vol = cinder(server, "alice").volumes.create(1, name="keep")
    cases: list[tuple[str, str, Any, int]] = [
        ("POST", "/volumes", b"{not json", 400),
        ("POST", "/volumes", {"size": 1}, 400),  # no "volume" object
        ("POST", "/volumes", {"volume": {"size": "abc"}}, 400),
        ("POST", "/volumes", {"volume": {"size": 0}}, 400),
        ("POST", "/volumes", {"volume": {"size": 1, "name": "a\x00b"}}, 400),
        ("POST", "/volumes", {"volume": {"size": 1, "name": "n" * 2000}}, 400),
        ("POST", "/volumes", {"volume": {"size": 1, "name": "../x"}}, 400),
        ("POST", "/volumes", {"volume": {"size": 1, "metadata": ["a"]}}, 400),
        ("POST", "/volumes", {"volume": {"size": 1, "snapshot_id": "%2F..%2F"}}, 404),
        ("GET", "/volumes/not-an-id", None, 404),
        ("GET", "/volumes?limit=-5", None, 400),
        ("GET", "/volumes?sort=owner:asc", None, 400),
        ("GET", "/volumes?metadata=oops(", None, 400),
        ("POST", f"/volumes/{vol.id}/action", {"os-frobnicate": {}}, 400),
        ("POST", f"/volumes/{vol.id}/action", {"os-extend": {}}, 400),
        ("POST", f"/volumes/{vol.id}/action", {"os-extend": {"new_size": 2}, "os-x": {}}, 400),
        (
            "POST",
            f"/volumes/{vol.id}/action",
            {"os-volume_upload_image": {"image_name": "x", "disk_format": "qcow2"}},
            400,
        ),
        ("PUT", f"/volumes/{vol.id}/metadata/k", {"meta": {"other": "v"}}, 400),
        ("POST", "/snapshots", {"snapshot": {"name": "s"}}, 400),
        ("POST", "/attachments", {"attachment": {"volume_uuid": vol.id, "mode": "rx", "connector": {}}}, 400),
        ("PUT", "/os-quota-sets/alpha", {"quota_set": {"volumes": 99}}, 403),
        ("PUT", "/os-quota-sets/alpha", {"quota_set": {"disks": 1}}, 400),
    ]
    for method, path, body, status in cases:
        kwargs: dict[str, Any] = {"headers": dict(v360), "raise_exc": False}
        if isinstance(body, bytes):
            kwargs["data"] = body
            kwargs["headers"]["Content-Type"] = "application/json"
        elif body is not None:
            kwargs["json"] = body
        resp = sess.request(base + path, method, **kwargs)
        assert resp.status_code == status, (method, path, resp.status_code, resp.text)
        assert resp.json()["error"]["message"], (method, path)
    wrong_type = sess.post(
        base + "/volumes", data=b"size=1", headers={"Content-Type": "text/plain"}, raise_exc=False
    )
    assert wrong_type.status_code == 415
    admin_bad = server.session("admin").put(
        base.replace("/alpha", "/admin") + "/os-quota-sets/alpha",
        json={"quota_set": {"disks": 1}},
        raise_exc=False,
    )
    assert admin_bad.status_code == 400 and "disks" in admin_bad.json()["error"]["message"]
    listed = cinder(server, "alice").volumes.list()
    assert [v.id for v in listed] == [vol.id]  # nothing was created by any of them
    assert cinder(server, "alice").volumes.get(vol.id).size == 1
    cinder(server, "alice").volumes.delete(vol.id)


def _failure_message(server: ApiServer, volume_id: str, reason: str) -> None:
    """Why the creation failed, as a user message: cinder message-list, openstack volume message list and
    show, openstacksdk; the project's only; deleted by the client."""
    listed = cli(server, "alice", "cinder", "message-list", "--resource_uuid", volume_id).stdout
    assert volume_id in listed and "VOLUME_VOLUME_005_001" in listed
    (mine,) = cinder(server, "alice").messages.list(search_opts={"resource_uuid": volume_id})
    assert mine.user_message == f"copy image to volume: {reason}" and mine.message_level == "ERROR"
    assert mine.request_id.startswith("req-") and mine.resource_type == "VOLUME"
    shown = json.loads(
        cli(server, "alice", "openstack", "volume", "message", "show", mine.id, "-f", "json").stdout
    )
    assert shown["Resource UUID"] == volume_id and shown["User Message"] == mine.user_message
    osc = json.loads(cli(server, "alice", "openstack", "volume", "message", "list", "-f", "json").stdout)
    assert mine.id in [m["ID"] for m in osc]
    assert mine.id not in [m.id for m in cinder(server, "bob").messages.list()]  # another project's
    with pytest.raises(cinder_exc.NotFound):
        cinder(server, "bob").messages.get(mine.id)
    with pytest.raises(cinder_exc.NotFound):  # messages came with microversion 3.3
        cinder(server, "alice", "3.2").client.get("/messages")
    cli(server, "alice", "openstack", "volume", "message", "delete", mine.id)
    assert cinder(server, "alice").messages.list(search_opts={"resource_uuid": volume_id}) == []


def test_volume_types_limits_and_zones(server: ApiServer) -> None:
    """What clients read before they create: one volume type, the quotas as absolute limits, one zone."""
    c = cinder(server, "bob")
    before = len(c.volumes.list())
    (vtype,) = c.volume_types.list()
    assert vtype.name == "atoll" and vtype.is_public and c.volume_types.get(vtype.id).name == "atoll"
    with pytest.raises(cinder_exc.NotFound):
        c.volume_types.get("gold")
    assert [z.zoneName for z in c.availability_zones.list()] == ["nova"]
    vol = c.volumes.create(1, name="typed", volume_type="atoll", availability_zone="nova")
    assert c.volumes.get(vol.id).volume_type == "atoll"
    with pytest.raises(cinder_exc.NotFound, match="volume type 'gold'"):
        c.volumes.create(1, name="gold", volume_type="gold")
    with pytest.raises(cinder_exc.BadRequest, match="availability zone"):
        c.volumes.create(1, name="far", availability_zone="elsewhere")
    absolute = {a.name: a.value for a in c.limits.get().absolute}
    assert absolute["maxTotalVolumes"] == 10 and absolute["totalVolumesUsed"] == before + 1
    assert absolute["totalGigabytesUsed"] >= 1 and absolute["maxTotalBackups"] == -1
    shown = json.loads(cli(server, "bob", "openstack", "limits", "show", "--absolute", "-f", "json").stdout)
    assert {row["Name"]: row["Value"] for row in shown}["total_volumes_used"] == before + 1
    listed = cli(server, "bob", "openstack", "volume", "type", "list").stdout
    assert "atoll" in listed
    (svc,) = cinder(server, "admin").services.list()
    assert (svc.binary, svc.state, svc.status, svc.zone) == ("cinder-volume", "up", "enabled", "nova")
    with pytest.raises(cinder_exc.Forbidden):
        c.services.list()
    assert cinder(server, "admin").qos_specs.list() == []
    second = c.volumes.create(2, name="typed-2", metadata={"tier": "b"})
    c.volumes.set_metadata(vol, {"tier": "a"})
    assert [v.name for v in c.volumes.list(sort="name:desc")][:2] == ["typed-2", "typed"]  # display_name
    summary = c.volumes.summary(all_tenants=False)["volume-summary"]
    assert summary["total_count"] == before + 2 and sorted(summary["metadata"]["tier"]) == ["a", "b"]
    volume_filters = c.resource_filters.list(resource="volume")
    assert [f.resource for f in volume_filters] == ["volume"] and "metadata" in volume_filters[0].filters
    c.volumes.delete(second.id)
    assert len(c.volumes.list()) == before + 1  # the refused ones made nothing
    c.volumes.delete(vol.id)


def test_bootable_flag_and_snapshot_metadata(server: ApiServer) -> None:
    """os-set_bootable, and /snapshots/{id}/metadata as cinderclient and openstack volume snapshot set
    use them (volume metadata has its own test above)."""
    c = cinder(server, "bob")
    vol = c.volumes.create(1, name="flags")
    assert c.volumes.get(vol.id).bootable == "false"  # not made from an image
    c.volumes.set_bootable(vol, True)
    assert c.volumes.get(vol.id).bootable == "true"
    c.volumes.set_bootable(vol, False)
    assert c.volumes.get(vol.id).bootable == "false"
    snap = c.volume_snapshots.create(vol.id, name="flags-snap", description="keep me")
    c.volume_snapshots.set_metadata(snap, {"a": "1", "b": "2"})
    cli(server, "bob", "openstack", "volume", "snapshot", "set", "--property", "c=3", "flags-snap")
    c.volume_snapshots.delete_metadata(snap, ["a"])
    shown = c.volume_snapshots.get(snap.id)
    assert shown.metadata == {"b": "2", "c": "3"} and shown.description == "keep me"
    with pytest.raises(cinder_exc.BadRequest, match="reserved"):
        c.volume_snapshots.set_metadata(snap, {"description": "sneaky"})
    with pytest.raises(cinder_exc.NotFound):
        c.volume_snapshots.delete_metadata(snap, ["nope"])
    c.volume_snapshots.delete(snap)
    c.volumes.delete(vol.id)


def test_readonly_flag_makes_read_only_attachments(server: ApiServer) -> None:
    """os-update_readonly_flag as cinderclient and openstack volume set --read-only send it: shown in the
    volume's metadata (as Cinder does), every attachment read-only, unchangeable while attached."""
    c = cinder(server, "bob")
    vol = c.volumes.create(1, name="ro-vol", metadata={"tier": "gold"})
    assert "readonly" not in c.volumes.get(vol.id).metadata  # not set: read-write, as in Cinder
    c.volumes.update_readonly_flag(vol, True)
    assert c.volumes.get(vol.id).metadata == {"tier": "gold", "readonly": "True"}
    conn = sdk(server, "bob")
    att = conn.block_storage.create_attachment(vol.id, connector={"platform": "x86_64"}, instance="inst-ro")
    try:
        assert att.connection_info["data"]["access_mode"] == "ro"
        device = Path(att.connection_info["data"]["device_path"])
        assert (Path("/sys/block") / device.name / "ro").read_text().strip() == "1"
        with pytest.raises(cinder_exc.BadRequest, match="attached"):
            c.volumes.update_readonly_flag(vol, False)
    finally:
        conn.block_storage.delete_attachment(att)
    cli(server, "bob", "openstack", "volume", "set", "--read-write", "ro-vol")
    assert c.volumes.get(vol.id).metadata["readonly"] == "False"
    att = conn.block_storage.create_attachment(vol.id, connector={"platform": "x86_64"})
    assert att.connection_info["data"]["access_mode"] == "rw"
    conn.block_storage.delete_attachment(att)
    cli(server, "bob", "openstack", "volume", "set", "--read-only", "ro-vol")
    assert c.volumes.get(vol.id).metadata["readonly"] == "True"
    with pytest.raises(cinder_exc.BadRequest, match="readonly"):
        c.volumes._action("os-update_readonly_flag", vol, {})
    c.volumes.delete(vol.id)


def test_backups_and_transfers_are_not_offered(server: ApiServer) -> None:
    """Listings are empty (dashboards list them beside volumes); creating one says what to use instead."""
    c = cinder(server, "bob", "3.55")
    assert c.backups.list() == [] and c.transfers.list() == []
    assert cli(server, "bob", "openstack", "volume", "backup", "list", "-f", "json").stdout.strip() == "[]"
    vol = c.volumes.create(1, name="kept")
    with pytest.raises(cinder_exc.BadRequest, match="snapshot"):
        c.backups.create(vol.id)
    refused = cli(server, "bob", "openstack", "volume", "transfer", "request", "create", "kept", check=False)
    assert refused.returncode != 0 and "offers no transfers" in refused.stderr
    c.volumes.delete(vol.id)
