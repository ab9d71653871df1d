"""Fixtures for the Ganeti tests: Atoll's scripts installed for a test store, run as Ganeti runs them."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provider.ganeti import install
from provider.ganeti.osglue import raw_path
from provider.services import Resource
from tests.conftest import StoreEnv, make_store_env, rbd_store_keys, write_disk
from tests.ganeti import cluster as ganeti_cluster
from tests.ganeti import guest
from tests.ganeti.cluster import Cluster
from tests.helpers import need, need_root, need_tools
from tests.images import build

IMAGE_SIZE = 256 << 20
INSTANCE_PREFIX = "atoll-t"


@dataclass
class Installed:
    """The provider, OS definition and hooks written by ``install`` for one store, in tmp directories."""

    env: StoreEnv
    extstorage: Path
    os: Path
    hooks: Path

    def run(self, directory: Path, action: str, args: tuple[str, ...] = (), **variables: str):  # type: ignore[no-untyped-def]
        """Run a script the way Ganeti does: no arguments, cwd = its directory, nothing but ``variables``
        in the environment (not even PATH)."""
        return subprocess.run(
            [str(directory / action), *args],
            env=dict(variables),
            cwd=directory,
            capture_output=True,
            text=True,
            check=False,
        )

    def ext(self, verb: str, **variables: str):  # type: ignore[no-untyped-def]
        return self.run(self.extstorage, verb, **variables)


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def make_installed(env: StoreEnv, base: Path, prefork: bool = True) -> Installed:
    """The scripts as ``atoll ganeti install`` writes them (``prefork``: calls go to the verb server)."""
    dirs = {name: base / name for name in ("extstorage", "os", "hooks")}
    install.install(
        sys.executable,
        str(env.config_path),
        extstorage_dir=dirs["extstorage"],
        os_dir=dirs["os"],
        hooks_dir=dirs["hooks"],
        log_dir=base / "no-ganeti-logs",
        prefork=prefork,
    )
    return Installed(env, dirs["extstorage"] / "atoll", dirs["os"] / "atoll", dirs["hooks"])


@pytest.fixture
def plain_env(tmp_path: Path) -> StoreEnv:
    """A qcow2 store with a SQLite catalog, for what depends on neither the backend nor the catalog."""
    return make_store_env("qcow2", tmp_path / "store", "")


@pytest.fixture
def installed(plain_env: StoreEnv, tmp_path: Path) -> Installed:
    return make_installed(plain_env, tmp_path / "ganeti")


@pytest.fixture(params=["qcow2", "reflink"])
def installed_each(request: pytest.FixtureRequest, tmp_path: Path) -> Installed:
    """The scripts on a store of each file backend (reflink on the session's loop-mounted XFS)."""
    return installed_on(request, tmp_path)


def installed_on(request: pytest.FixtureRequest, tmp_path: Path, prefork: bool = True) -> Installed:
    """The scripts on a store of the backend ``request.param`` (rbd: a namespace of its own)."""
    path = tmp_path / "store"
    if request.param == "rbd":
        keys = rbd_store_keys(request.getfixturevalue("ceph_conf"))
        return make_installed(make_store_env("rbd", path, "", store=keys), tmp_path / "ganeti", prefork)
    if request.param == "reflink":
        path = request.getfixturevalue("xfs_mount") / tmp_path.name
        request.addfinalizer(lambda: subprocess.run(["rm", "-rf", str(path)], check=False))
    return make_installed(make_store_env(request.param, path, ""), tmp_path / "ganeti", prefork)


def register_image(env: StoreEnv, path: Path, name: str) -> str:
    """Upload ``path`` and register it as the Linux image ``name``; return the name."""
    store = env.open()
    with open(path, "rb") as f:
        store.objects.upload(f"images/{name}.raw", f)
    store.images.register(f"images/{name}.raw", name, properties={"OSFAMILY": "linux"})
    return name


def add_image(inst: Installed, tmp_path: Path) -> str:
    """A 32 MiB raw image registered as ``img`` in the store of ``inst``."""
    return register_image(inst.env, write_disk(tmp_path / "img.raw", 32 << 20), "img")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A real single-node Ganeti 3.0 from the project's script: the one that is up (refreshed), else one
    started here and removed after the session (ATOLL_GANETI_KEEP=1 keeps it). Held exclusively."""
    need_root()
    need_tools("unshare", "nsenter", "findmnt", "openssl")
    need(Path("/usr/lib/ganeti/daemon-util").exists(), "needs Ganeti 3.0 (scripts/install-deps.sh)")
    need(
        not Path("/run/systemd/system").exists(), "the test cluster needs a machine without systemd as PID 1"
    )
    with ganeti_cluster.exclusive():
        was_up = ganeti_cluster.answers()
        started = ganeti_cluster.up()
        try:
            yield started
        finally:
            if not was_up and os.environ.get("ATOLL_GANETI_KEEP") != "1":
                ganeti_cluster.down()


@pytest.fixture(scope="session")
def guest_image() -> Path:
    """A partitioned ext4 test image (GPT, root partition 1, host name 'template'), built once."""
    need_root()
    need_tools("sfdisk", "mkfs.ext4", "debugfs", "e2fsck")
    path, _info = build.cached(build.ImageSpec(size=IMAGE_SIZE))
    return path


@pytest.fixture(scope="module", params=["reflink", "qcow2"])
def ganeti_env(
    request: pytest.FixtureRequest,
    cluster: Cluster,
    tmp_path_factory: pytest.TempPathFactory,
    guest_image: Path,
) -> Iterator[GanetiEnv]:
    """A store on each file backend, the Atoll provider, OS definition and hooks installed for it on the
    node, and the test image registered as ``guest``."""
    backend = request.param
    base = tmp_path_factory.mktemp(f"ganeti-{backend}")
    path = request.getfixturevalue("xfs_mount") / base.name if backend == "reflink" else base / "store"
    env = make_store_env(backend, path, "")
    changes = install.install(sys.executable, str(env.config_path))
    image = register_image(env, guest_image, "guest")
    try:
        yield GanetiEnv(env, cluster, image)
    finally:
        for name in cluster.instances():
            if name.startswith(INSTANCE_PREFIX):
                cluster.remove_instance(name)
        for change in changes:
            if change.path.is_file():
                change.path.unlink()
                with contextlib.suppress(OSError):  # a hook directory this install made, now empty
                    change.path.parent.rmdir()
        for directory in (install.DEFAULT_EXTSTORAGE_DIR / "atoll", install.DEFAULT_OS_DIR / "atoll"):
            shutil.rmtree(directory, ignore_errors=True)
        subprocess.run(["rm", "-rf", str(path)], check=False)


@dataclass
class GanetiEnv:
    store_env: StoreEnv
    cluster: Cluster
    image: str

    @contextlib.contextmanager
    def disk(self) -> Iterator[Path]:
        """The raw disk of the (only) volume Ganeti made."""
        (vol,) = self.ganeti_volumes()
        with raw_path(self.store_env.open(), vol, None) as path:
            yield path

    def read(self, guest_path: str) -> str:
        """A file of the guest on the (only) Ganeti volume."""
        with self.disk() as path:
            return guest.read_file(path, guest_path)

    def ganeti_volumes(self) -> list[Resource]:
        """Volumes Ganeti made (they carry a VOL_NAME)."""
        return [
            v for v in self.store_env.open().volumes.list() if v.volume and v.volume.ganeti.get("VOL_NAME")
        ]

    def add(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.cluster.remove_instance(name)
        return self.cluster.gnt(
            "gnt-instance",
            "add",
            "--no-name-check",
            "--no-ip-check",
            "--no-nics",
            "-n",
            self.cluster.node,
            *args,
            name,
            check=check,
        )


@pytest.fixture(scope="session")
def ssh_public_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An ed25519 public key line made for this session (its base64 has no '=' to upset -O parsing)."""
    need_tools("ssh-keygen")
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "atoll-test", "-f", str(key)], check=True
    )
    return key.with_suffix(".pub").read_text().strip()
