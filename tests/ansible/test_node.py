"""site.yml applied to this machine, then the node's state checked with testinfra."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from provider import __version__
from tests.ansible.conftest import Node, node_variables
from tests.ansible.playbook import os_packages, run_playbook
from tests.images import build

if TYPE_CHECKING:
    from testinfra.host import Host

pytestmark = [pytest.mark.root, pytest.mark.slow]

# What Ganeti requires of a provider and an OS definition (gnt-storage / gnt-os diagnose): executables
# with the owner's exec bit, and text files.
EXTSTORAGE_REQUIRED = ("create", "attach", "detach", "remove", "grow", "setinfo", "verify")
EXTSTORAGE_OPTIONAL = ("snapshot", "open", "close")
OS_REQUIRED = ("create", "export", "import", "rename", "verify")
HOOK_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def test_first_run_converges_and_second_run_changes_nothing(node: Node) -> None:
    assert node.first.total("changed") > 0, node.first.explain()
    assert node.second.total("changed") == 0, (
        f"second run changed {node.second.changed_tasks}\n{node.second.explain()}"
    )
    assert node.second.total("unreachable") == 0


def test_check_mode_writes_nothing_and_predicts_changes(node: Node, tmp_path: Path) -> None:
    """--check on the converged node reports nothing to do; on a fresh one it reports the changes
    (a new build included), builds the package from the checkout the playbook sits in (the default
    atoll_source_dir), and writes nothing."""
    again = run_playbook("site.yml", node.variables, tmp_path / "converged", options=("--check",))
    assert again.rc == 0 and again.total("changed") == 0, again.explain()
    fresh_root = tmp_path / "fresh"
    variables = node_variables(fresh_root)
    del variables["atoll_source_dir"]
    fresh = run_playbook("site.yml", variables, tmp_path / "fresh-run", options=("--check",))
    assert fresh.rc == 0 and fresh.total("failed") == 0, fresh.explain()
    assert "atoll : Report that a new build would be installed" in fresh.changed_tasks
    assert "atoll : Write the configuration file" in fresh.changed_tasks
    assert not fresh_root.exists()


def test_system_packages_are_installed(node: Node, host: Host) -> None:
    missing = [p for p in os_packages() if not host.package(p).is_installed]
    assert not missing
    assert host.exists("qemu-img") and host.exists("qemu-storage-daemon") and host.exists("mkfs.xfs")


def test_virtualenv_uses_debian_python_with_site_packages(node: Node, host: Host) -> None:
    venv = f"{node.var('atoll_home')}/venv"
    cfg = host.file(f"{venv}/pyvenv.cfg")
    assert cfg.is_file
    assert cfg.contains("^include-system-site-packages = true")
    assert cfg.contains("^home = /usr/bin$")
    # The Ceph bindings are Debian-only: the venv sees them through the system site packages.
    host.check_output(f"{venv}/bin/python -c 'import rados, rbd'")


def test_atoll_version(node: Node, host: Host) -> None:
    assert host.check_output(f"{node.atoll} --version").split()[-1] == __version__


def test_atoll_is_on_roots_path(node: Node, host: Host) -> None:
    """The role links the venv's atoll into a directory on root's PATH (/usr/local/bin by default;
    under the test's private root here), so `atoll` works in a root shell without the venv's path."""
    link = host.file(node.var("atoll_bin_link"))
    assert link.is_symlink and link.linked_to == f"{node.var('atoll_home')}/venv/bin/atoll"
    assert link.user == "root"
    bin_dir = shlex.quote(str(Path(node.var("atoll_bin_link")).parent))
    out = host.check_output(f"env -i HOME=/root PATH={bin_dir}:/usr/bin:/bin atoll --version")
    assert out.split()[-1] == __version__
    defaults = yaml.safe_load(
        (Path(__file__).parents[2] / "ansible/roles/atoll/defaults/main.yml").read_text()
    )
    login_path = host.check_output("env -i HOME=/root sh -lc 'echo $PATH'").split(":")
    assert str(Path(defaults["atoll_bin_link"]).parent) in login_path


def test_installed_sources_are_recorded(node: Node, host: Host) -> None:
    manifest = host.file(f"{node.var('atoll_home')}/venv/atoll-sources.sha1")
    assert manifest.mode == 0o644
    assert re.search(r"^[0-9a-f]{40}  provider/config\.py$", manifest.content_string, re.MULTILINE)


def test_configuration_file(node: Node, host: Host) -> None:
    f = host.file(node.config)
    assert (f.user, f.group, f.mode) == ("root", "root", 0o640)
    assert host.file(node.config).content_string.startswith("# Ansible managed")
    config = yaml.safe_load(f.content_string)
    assert config["store"] == {"backend": "local", "path": node.var("atoll_store_path"), "max_chain_depth": 8}
    assert "url" not in config["catalog"]
    assert config["auth"]["admins"] == ["root"]


def test_store_directory_is_initialized(node: Node, host: Host) -> None:
    store = host.file(node.var("atoll_store_path"))
    assert store.is_directory and (store.user, store.mode) == ("root", 0o750)
    assert host.file(f"{node.var('atoll_store_path')}/catalog.sqlite").is_file
    info = json.loads(host.check_output(f"{node.atoll} --config {node.config} -o json init"))
    assert info["store"] == node.var("atoll_store_path")
    assert info["backend"] in ("qcow2", "reflink")


def _executable_file(host: Host, path: str) -> bool:
    f = host.file(path)
    return f.is_file and not f.is_symlink and bool(f.mode & 0o100)


def test_extstorage_provider_is_complete(node: Node, host: Host) -> None:
    """What `gnt-storage diagnose` checks: every required script executable, parameters.list readable."""
    base = f"{node.var('atoll_ganeti_extstorage_dir')}/atoll"
    verbs = EXTSTORAGE_REQUIRED + EXTSTORAGE_OPTIONAL
    assert not [v for v in verbs if not _executable_file(host, f"{base}/{v}")]
    lines = host.file(f"{base}/parameters.list").content_string.splitlines()
    params = [line.split(None, 1) for line in lines]
    assert params and all(len(p) == 2 for p in params)
    assert "origin" in [p[0] for p in params]


def test_os_definition_is_complete(node: Node, host: Host) -> None:
    base = f"{node.var('atoll_ganeti_os_dir')}/atoll"
    assert not [a for a in OS_REQUIRED if not _executable_file(host, f"{base}/{a}")]
    assert host.file(f"{base}/ganeti_api_version").content_string.split()[0] == "20"
    assert "default" in host.file(f"{base}/variants.list").content_string.split()
    assert host.file(f"{base}/parameters.list").content_string.strip()


def test_hooks_are_executable_and_well_named(node: Node, host: Host) -> None:
    hooks_dir = node.var("atoll_ganeti_hooks_dir")
    hooks = host.check_output(f"find {hooks_dir} -mindepth 2 -maxdepth 2 -type f").split()
    assert hooks
    for path in hooks:
        assert path.split("/")[-2].endswith("-post.d")
        assert HOOK_NAME.match(path.rsplit("/", 1)[1]), path
        assert _executable_file(host, path), path


def test_every_script_runs_the_installed_atoll_in_a_clean_environment(node: Node, host: Host) -> None:
    """Ganeti runs scripts with an empty environment: each shim must still reach this node's Atoll
    and its configuration (its -h prints the usage)."""
    dirs = [
        f"{node.var('atoll_ganeti_extstorage_dir')}/atoll",
        f"{node.var('atoll_ganeti_os_dir')}/atoll",
        node.var("atoll_ganeti_hooks_dir"),
    ]
    scripts = host.check_output(f"find {' '.join(dirs)} -type f -perm -u+x").split()
    assert len(scripts) >= len(EXTSTORAGE_REQUIRED) + len(OS_REQUIRED)
    for script in scripts:
        text = host.file(script).content_string
        assert f"{node.var('atoll_home')}/venv/bin/python" in text and node.config in text, script
        result = host.run(f"cd / && env -i {shlex.quote(script)} -h")
        assert result.rc == 0 and "usage:" in result.stdout + result.stderr, (script, result.stderr)


def test_smoke_volume_from_image(node: Node, host: Host) -> None:
    """Upload a partitioned ext4 disk, register it as a Linux image, clone a bigger volume from it:
    the clone is customized (partition and filesystem grown, host name set) with the tools the role
    installed."""
    atoll = f"{node.atoll} --config {node.config}"
    disk = node.root / "smoke.raw"
    info = build.build(build.ImageSpec(size=256 << 20), disk)
    host.check_output(f"{atoll} object upload images/smoke.raw {disk}")
    props = f"--property OSFAMILY=linux --property ROOT_PARTITION={info.root_partition}"
    host.check_output(f"{atoll} image register images/smoke.raw --name smoke {props}")
    try:
        created = host.check_output(
            f"{atoll} -o json volume create smoke-vol --from smoke --size 512M --hostname smoke"
        )
        vol = json.loads(created)
        assert (vol["kind"], vol["mode"], vol["size"]) == ("volume", "rw", 512 << 20)
        image = json.loads(host.check_output(f"{atoll} -o json image show smoke"))
        assert vol["parent"] == image["id"]
    finally:
        host.run(f"{atoll} volume delete smoke-vol")
        host.run(f"{atoll} image delete smoke")


def test_xfs_store_is_mounted_with_reflink(xfs_node: Node, host: Host) -> None:
    assert xfs_node.second.total("changed") == 0, xfs_node.second.explain()
    store = xfs_node.var("atoll_store_path")
    mount = host.mount_point(store)
    assert mount.exists and mount.filesystem == "xfs"
    assert "reflink=1" in host.check_output(f"xfs_info {store}")
    fstab = host.file(xfs_node.var("atoll_store_xfs_fstab")).content_string.splitlines()
    device = xfs_node.var("atoll_store_xfs_device")
    assert [line.split()[:3] for line in fstab] == [[device, store, "xfs"]]
    assert "loop" in fstab[0].split()[3].split(",")
    info = json.loads(host.check_output(f"{xfs_node.atoll} --config {xfs_node.config} -o json init"))
    assert info["backend"] == "reflink"
