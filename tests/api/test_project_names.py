"""Two projects use the same names through the three APIs, as Glance, Cinder and Swift allow: neither
is refused, neither sees the other's."""

from __future__ import annotations

import openstack

from tests.api.conftest import ApiServer
from tests.api.test_swift import swift


def test_same_names_in_two_projects(api_server: ApiServer) -> None:
    made = {}
    for user in ("alice", "bob"):
        sdk = openstack.connection.Connection(session=api_server.session(user))
        image = sdk.image.create_image(name="same-name", disk_format="raw", container_format="bare")
        volume = sdk.block_storage.create_volume(name="same-name", size=1)
        volume = sdk.block_storage.wait_for_status(volume, "available", wait=120)
        objects = swift(api_server, user)
        objects.put_container("same")
        objects.put_object("same", "name.raw", f"{user}'s bytes".encode())
        made[user] = (sdk, objects, image.id, volume.id)
    for user, (sdk, objects, image_id, volume_id) in made.items():
        assert [i.id for i in sdk.image.images(name="same-name")] == [image_id]
        assert [v.id for v in sdk.block_storage.volumes(name="same-name")] == [volume_id]
        assert objects.get_object("same", "name.raw")[1] == f"{user}'s bytes".encode()
    for sdk, objects, image_id, volume_id in made.values():
        sdk.image.delete_image(image_id)
        sdk.block_storage.delete_volume(volume_id)
        objects.delete_object("same", "name.raw")
        objects.delete_container("same")
