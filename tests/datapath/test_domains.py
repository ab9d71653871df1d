"""libvirt domains through the product (``store.domains``, ``atoll volume attach --domain``): hot-plug on
each backend's path, recorded in the attachment table; detaches that would break a guest are refused;
``--direct`` qcow2 with live grow and snapshot through libvirt; the cephx secret for rbd disks.

The domains here run no OS (SeaBIOS finds nothing to boot): nothing answers a hot-unplug request, which
is exactly the guest that must not hang a detach. tests/datapath/test_domain_boot.py boots a real one."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from customization.params import InstanceParams
from provider import config as config_mod
from provider.datapath.domains import Libvirt, cephx_key, disks
from provider.errors import CapabilityNotSupported, Conflict, InUse, NotFound
from provider.model import Attachment
from provider.services import Store
from tests.conftest import StoreEnv, make_store_env, rbd_store_keys
from tests.datapath.conftest import BARE, IMAGE_SIZE, Disks
from tests.helpers import need


def libvirt_env(env: StoreEnv, uri: str, **keys: Any) -> StoreEnv:
    """``env`` with ``libvirt.uri`` pointing at the tests' libvirtd."""
    raw = yaml.safe_load(env.config_path.read_text())
    raw["libvirt"] = {"uri": uri, **keys}
    env.config_path.write_text(yaml.safe_dump(raw))
    return StoreEnv(env.config_path, config_mod.load(env.config_path), env.backend)


@pytest.fixture
def lv_store(denv: StoreEnv, disks: Disks, libvirt_uri: str) -> Store:
    return libvirt_env(denv, libvirt_uri).open()


def _has_libvirt() -> bool:
    return _importable("libvirt")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def live_disks(dom: Any) -> dict[str, str | None]:
    return {t: d.source for t, d in disks(dom.XMLDesc(0)).items()}


def test_hotplug_is_recorded_and_unsafe_detaches_are_refused(
    lv_store: Store, disks: Disks, bare_domain: Any
) -> None:
    store, dom = lv_store, bare_domain
    vid = disks.volume("hp")
    att = store.domains.attach("hp", dom.name())
    assert (att.domain, att.target) == (dom.name(), "vdb")
    assert store.datapath.attachment(vid) == att  # the same attachment table, domain included
    assert "vdb" in live_disks(dom) and dom.blockInfo("vdb")[0] == IMAGE_SIZE
    assert att.kind == ("nbd" if disks.store.backend().name == "qcow2" else "file")
    assert store.domains.attach("hp", dom.name()) == att  # idempotent
    with pytest.raises(InUse, match=r"plugged into libvirt domain .* already"):
        store.domains.attach("hp", dom.name(), target="vdc")
    assert "<target dev='vdb' bus='virtio'/>" in store.domains.xml("hp")

    # Releasing the data path under the guest, or rewriting its disk, is refused with the way out.
    with pytest.raises(InUse, match=f"plugged into libvirt domain {dom.name()} as vdb: .*--domain"):
        store.volumes.detach("hp")
    with pytest.raises(InUse, match=r"attached at .*: detach it to customize it"):
        store.customize.run("hp", InstanceParams(hostname="x"))
    with pytest.raises(Conflict, match=f"plugged into libvirt domain {dom.name()}, not other"):
        store.domains.detach("hp", "other")

    # Nothing in this guest answers the unplug request: a clear refusal after the timeout, no hang; the
    # disk stays plugged, working and recorded.
    with pytest.raises(InUse, match=r"did not release it within 1 s .*it stays plugged"):
        store.domains.detach("hp", dom.name(), timeout=1)
    assert dom.isActive() and "vdb" in live_disks(dom) and dom.blockInfo("vdb")[0] == IMAGE_SIZE
    assert store.datapath.attachment(vid) == att
    with pytest.raises(InUse, match=r"did not release it within 1 s"):  # again, the request still pending
        store.domains.detach("hp", dom.name(), timeout=1)

    dom.destroy()  # QEMU is gone: the detach releases the data path (the leak check follows)
    store.domains.detach("hp", dom.name())
    assert store.datapath.attachment(vid) is None
    store.domains.detach("hp", dom.name())  # idempotent


def test_plug_into_missing_domain_or_taken_target(lv_store: Store, disks: Disks, bare_domain: Any) -> None:
    store = lv_store
    disks.volume("a")
    disks.volume("b")
    with pytest.raises(NotFound, match="libvirt domain 'no-such-domain' not found"):
        store.domains.attach("a", "no-such-domain")
    assert store.datapath.attachment(store.volumes.get("a").id) is None
    store.domains.attach("a", bare_domain.name(), target="vdd")
    with pytest.raises(InUse, match="it has a disk vdd already"):
        store.domains.attach("b", bare_domain.name(), target="vdd")
    assert store.datapath.attachment(store.volumes.get("b").id) is None  # nothing left set up
    with pytest.raises(CapabilityNotSupported, match="--direct is for qcow2 volumes"):
        store.domains.xml(disks.image.id, direct=True)  # a raw image
    bare_domain.destroy()
    store.domains.detach("a", bare_domain.name())


@pytest.fixture
def direct_store(qenv: StoreEnv, qdisks: Disks, libvirt_uri: str) -> Store:
    return libvirt_env(qenv, libvirt_uri).open()


def test_direct_qcow2_grows_and_snapshots_through_libvirt(
    direct_store: Store, qdisks: Disks, bare_domain: Any
) -> None:
    store, dom = direct_store, bare_domain
    vid = qdisks.volume("d1")
    top = str(store.backend().path(store.volumes.get(vid).locator))
    att = store.domains.attach("d1", dom.name(), direct=True)
    assert att.direct and att.uri == top and att.device is None
    assert live_disks(dom)["vdb"] == top  # QEMU opens the qcow2 file itself: no daemon
    assert "type='qcow2'" in disks(dom.XMLDesc(0))["vdb"].xml.replace('"', "'")
    with pytest.raises(InUse, match="its qcow2 file opened by QEMU: detach it first"):
        store.volumes.attach("d1", userspace=True)

    store.volumes.grow("d1", 2 * IMAGE_SIZE)  # blockResize: the guest's disk grows at once
    assert dom.blockInfo("vdb")[0] == 2 * IMAGE_SIZE and store.volumes.get(vid).size == 2 * IMAGE_SIZE

    snap = store.volumes.snapshot("d1", "d1-snap")  # an external disk-only snapshot in QEMU
    new_top = str(store.backend().path(store.volumes.get(vid).locator))
    assert new_top != top and snap.size == 2 * IMAGE_SIZE
    assert str(store.backend().path(snap.locator)) == top and not os.stat(top).st_mode & stat.S_IWUSR
    assert live_disks(dom)["vdb"] == new_top  # catalog and QEMU agree on the top
    assert store.datapath.attachment(vid).uri == new_top  # type: ignore[union-attr]
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", new_top],
                                     capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert Path(top).name in info["backing-filename"]
    assert f"<source file='{new_top}'/>" in store.domains.xml("d1")

    dom.destroy()
    store.domains.detach("d1", dom.name())
    assert store.datapath.attachment(vid) is None
    check = subprocess.run(["qemu-img", "check", new_top], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_direct_into_a_shut_off_definition(direct_store: Store, qdisks: Disks, libvirt_uri: str) -> None:
    """--config on a defined, shut-off domain: the disk goes into its definition; a snapshot then points
    the definition at the new top (nothing runs, so nothing is live)."""
    store = direct_store
    vid = qdisks.volume("cold")
    with Libvirt(libvirt_uri).connect() as conn:
        dom = conn.defineXML(BARE.format(name=f"cold-{uuid.uuid4().hex[:8]}"))
        try:
            with pytest.raises(InUse, match="shut off: start it, or use --config"):
                store.domains.attach("cold", dom.name(), direct=True)
            att = store.domains.attach("cold", dom.name(), direct=True, config=True)
            store.volumes.snapshot("cold", "cold-snap")
            new_top = str(store.backend().path(store.volumes.get(vid).locator))
            inactive = disks(dom.XMLDesc(2))  # VIR_DOMAIN_XML_INACTIVE
            assert inactive[att.target or ""].source == new_top
            store.domains.detach("cold", dom.name())
            assert att.target not in disks(dom.XMLDesc(2))
        finally:
            dom.undefine()


def _ceph_conf(tmp_path: Path, auth: str) -> Path:
    keyring = tmp_path / "keyring"
    keyring.write_text("[client.vm]\n\tkey = AQBzXxxlAAAAABAAc2VjcmV0LWtleS1mb3ItdGVzdHM=\n")
    conf = tmp_path / f"ceph-{auth}.conf"
    conf.write_text(
        f"[global]\nmon_host = 127.0.0.1:6789\nauth_client_required = {auth}\nkeyring = {keyring}\n"
    )
    return conf


def test_rbd_cephx_secret_is_defined_once_and_named(tmp_path: Path, libvirt_uri: str) -> None:
    need(_importable("rados"), "needs python3-rados (run scripts/install-deps.sh)")
    conf = _ceph_conf(tmp_path, "cephx")
    key = cephx_key(str(conf), "vm")
    assert key == "AQBzXxxlAAAAABAAc2VjcmV0LWtleS1mb3ItdGVzdHM="
    assert cephx_key(str(_ceph_conf(tmp_path, "none")), "vm") is None
    lv = Libvirt(libvirt_uri)
    with lv.connect() as conn:
        first = lv.define_ceph_secret(conn, "vm", key)
        again = lv.define_ceph_secret(conn, "vm", key)
        assert first == again
        usages = [s.usageID() for s in conn.listAllSecrets(0)]
        assert usages.count("client.vm secret") == 1

    env = StoreEnv(tmp_path / "atoll.yaml", config_mod.parse(
        {"store": {"backend": "qcow2", "path": str(tmp_path / "s"), "ceph_conf": str(conf), "user": "vm"},
         "libvirt": {"uri": libvirt_uri}}), "qcow2")  # fmt: skip
    store = Store.open(env.config)
    att = Attachment("r", "rw", "userspace", "rbd", None, f"rbd:atoll/vol-1:id=vm:conf={conf}", "h")
    res = store.volumes.create("v", size=1 << 20)
    xml = store.domains.render(res, att, "vdb")
    assert f"<secret type='ceph' uuid='{first}'/>" in xml and "<auth username='vm'>" in xml
    assert f"<config file='{conf}'/>" in xml
    no_cephx = str(_ceph_conf(tmp_path, "none"))
    store_none = Store.open(config_mod.parse({
        "store": {"backend": "qcow2", "path": str(tmp_path / "s"), "ceph_conf": no_cephx, "user": "vm"},
        "libvirt": {"uri": libvirt_uri}}))  # fmt: skip
    assert "<auth" not in store_none.domains.render(res, att, "vdb")


def test_cli_plugs_and_refuses_with_one_line(
    denv: StoreEnv, disks: Disks, libvirt_uri: str, bare_domain: Any
) -> None:
    env, name = libvirt_env(denv, libvirt_uri), bare_domain.name()
    disks.volume("c1")
    plugged = env.json("volume", "attach", "c1", "--domain", name, "--target", "vdc")
    assert (plugged["domain"], plugged["target"]) == (name, "vdc")
    assert "<target dev='vdc' bus='virtio'/>" in plugged["libvirt_xml"]
    assert env.cli("volume", "attach", "c1", "--domain", name).stdout.decode() == f"{name} vdc\n"
    assert env.cli("volume", "xml", "c1").stdout.decode().startswith("<disk type=")
    refused = env.cli("volume", "detach", "c1", check=False)
    assert refused.returncode == 1
    assert refused.stderr.decode().strip().splitlines() == [
        f"atoll: error: volume 'c1' is in use: it is plugged into libvirt domain {name} as vdc: "
        f"atoll volume detach c1 --domain {name}"
    ]
    slow = env.cli("volume", "detach", "c1", "--domain", name, "--timeout", "0.5", check=False)
    assert slow.returncode == 1 and "did not release it within 0.5 s" in slow.stderr.decode()
    for bad in (("--config",), ("--direct",), ("--domain", name, "--userspace")):
        usage = env.cli("volume", "attach", "c1", *bad, check=False)
        assert usage.returncode == 2, usage.stderr
    assert env.cli("volume", "detach", "c1", "--timeout", "3", check=False).returncode == 2
    bare_domain.destroy()
    assert env.cli("volume", "detach", "c1", "--domain", name).stdout.decode() == "detached c1\n"


def test_rbd_volume_hotplugs(
    tmp_path: Path, libvirt_uri: str, bare_domain: Any, request: pytest.FixtureRequest
) -> None:
    """An rbd volume goes in as libvirt's own rbd disk (QEMU's librbd; the micro Ceph of the tests runs
    without cephx, so the disk carries no <auth>)."""
    ceph_conf = request.getfixturevalue("ceph_conf")
    keys = rbd_store_keys(ceph_conf)
    spaced = libvirt_env(make_store_env("rbd", tmp_path / "spaced", "", store=keys), libvirt_uri).open()
    spaced.volumes.create("r0", size=IMAGE_SIZE)
    with pytest.raises(CapabilityNotSupported, match=r"RBD namespace .* use a store without store.namespace"):
        spaced.domains.attach("r0", bare_domain.name())
    assert spaced.datapath.attachment(spaced.volumes.get("r0").id) is None  # nothing left attached
    spaced.volumes.delete("r0")

    # The pool's own namespace (shared with other tests: the volume's RBD image has a unique name).
    base = make_store_env("rbd", tmp_path / "store", "", store={**keys, "namespace": ""})
    store = libvirt_env(base, libvirt_uri).open()
    store.volumes.create("r1", size=IMAGE_SIZE)
    att = store.domains.attach("r1", bare_domain.name())
    assert att.kind == "rbd" and bare_domain.blockInfo(att.target)[0] == IMAGE_SIZE
    plugged = disks(bare_domain.XMLDesc(0))[att.target or ""].xml.replace('"', "'")
    assert "protocol='rbd'" in plugged and "<auth" not in plugged
    with pytest.raises(InUse, match="plugged into libvirt domain"):
        store.volumes.delete("r1")
    bare_domain.destroy()
    store.domains.detach("r1", bare_domain.name())
    store.volumes.delete("r1")


def test_customize_refuses_a_volume_attached_anywhere(denv: StoreEnv, disks: Disks) -> None:
    """Customizing rewrites the guest's filesystem: never under a user of the volume (here a plain
    attach; a domain's disk above), through the service and the CLI."""
    disks.volume("busy")
    att = disks.store.volumes.attach("busy")
    try:
        with pytest.raises(InUse, match=r"attached at .*: detach it to customize it"):
            disks.store.customize.run("busy", InstanceParams(hostname="x"))
        refused = denv.cli("customize", "busy", "--hostname", "x", check=False)
        assert refused.returncode == 1
        line = refused.stderr.decode().strip().splitlines()[-1]
        # what holds it (device, since when, the serving daemon if any) and the command that releases it
        held = f"atoll: error: volume 'busy' is in use: attached at {att.device} since "
        assert line.startswith(held), line
        assert line.endswith(": detach it to customize it ('atoll volume detach busy')"), line
    finally:
        disks.store.volumes.detach("busy")
