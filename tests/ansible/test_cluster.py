"""cluster.yml: two nodes of this machine sharing a Ceph pool (the session's micro Ceph) and a
PostgreSQL catalog, rolled out one at a time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from tests.ansible.conftest import Cluster

if TYPE_CHECKING:
    from testinfra.host import Host

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_two_nodes_converge_and_a_second_run_changes_nothing(cluster_nodes: Cluster) -> None:
    runs = cluster_nodes.runs
    assert set(runs.first.recap) == {"node1", "node2"}
    assert runs.second.total("changed") == 0, f"changed {runs.second.changed_tasks}\n{runs.second.explain()}"


def test_each_node_is_configured_for_ceph_and_postgresql(cluster_nodes: Cluster, host: Host) -> None:
    shared = cluster_nodes.runs.variables
    for settings in cluster_nodes.nodes.values():
        config = yaml.safe_load(host.file(settings["atoll_config_path"]).content_string)
        assert config["store"]["backend"] == "rbd"
        assert config["store"]["path"] == settings["atoll_store_path"]
        assert config["store"]["ceph_conf"] == shared["atoll_ceph_conf"]
        assert (
            host.file(str(shared["atoll_ceph_conf"])).content_string
            == Path(str(shared["atoll_ceph_conf_src"])).read_text()
        )
        keyring = host.file(str(shared["atoll_ceph_keyring_path"]))
        assert (keyring.user, keyring.mode) == ("root", 0o600)
        assert (config["store"]["pool"], config["store"]["namespace"], config["store"]["user"]) == (
            shared["atoll_rbd_pool"],
            shared["atoll_rbd_namespace"],
            "admin",
        )
        assert config["catalog"]["url"] == shared["atoll_catalog_url"]
    # the PostgreSQL driver came with the package's extra
    host.check_output(f"{cluster_nodes.runs.atoll.removesuffix('/atoll')}/python -c 'import psycopg'")


def test_a_volume_made_on_one_node_is_seen_on_the_other(
    cluster_nodes: Cluster, host: Host, tmp_path: Path
) -> None:
    one, two = cluster_nodes.atoll("node1"), cluster_nodes.atoll("node2")
    disk = tmp_path / "shared.raw"
    with open(disk, "wb") as f:
        f.truncate(32 << 20)
        f.write(b"atoll-shared")
    host.check_output(f"{one} object upload images/shared.raw {disk}")
    host.check_output(f"{one} image register images/shared.raw --name shared")
    try:
        create = f"{two} -o json volume create shared-vol --from shared --size 64M --no-customize"
        vol = json.loads(host.check_output(create))
        seen = json.loads(host.check_output(f"{one} -o json volume show shared-vol"))
        assert (seen["id"], seen["kind"], seen["size"]) == (vol["id"], "volume", 64 << 20)
    finally:
        host.run(f"{one} volume delete shared-vol")
        host.run(f"{two} image delete shared")
