"""site.yml with Ganeti's real directories, checked by Ganeti itself on the project's test cluster."""

from __future__ import annotations

import pytest

from tests.ansible.conftest import Node
from tests.ganeti.cluster import Cluster

pytestmark = [pytest.mark.root, pytest.mark.slow]


def test_rollout_into_ganeti_directories_changes_only_them(ganeti_node: Node) -> None:
    assert ganeti_node.first.changed_tasks == [
        "atoll : Write the provider, OS definition and hooks with `atoll ganeti install`"
    ]


def test_gnt_storage_diagnose_finds_a_valid_provider(ganeti_node: Node, ganeti_cluster: Cluster) -> None:
    out = ganeti_cluster.gnt("gnt-storage", "diagnose").stdout
    provider = out.split("Provider: atoll", 1)[1].split("Provider:", 1)[0]
    assert "status: valid (path: /srv/ganeti/extstorage/atoll)" in provider, out
    assert "For nodegroup: default --> valid" in provider, out


def test_gnt_os_diagnose_finds_a_valid_os_definition(ganeti_node: Node, ganeti_cluster: Cluster) -> None:
    out = ganeti_cluster.gnt("gnt-os", "diagnose").stdout
    os_block = out.split("OS: atoll ", 1)[1].split("\nOS: ", 1)[0]
    assert os_block.startswith("[global status: valid]"), out
    assert "(path: /srv/ganeti/os/atoll)" in os_block and "[API versions: 20]" in os_block, out
    assert "atoll+default" in ganeti_cluster.gnt("gnt-os", "list").stdout.split()
