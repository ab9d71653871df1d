"""``atoll --version``/``--help`` and the frequent ExtStorage verbs pay only for what they use.

Each case runs the real entry point in a fresh interpreter with ``PYTHONPROFILEIMPORTTIME=1`` and asserts
on the modules it imported (never on times): no SQLAlchemy means no ORM, no catalog migration check and
no services on that call. The cases where a fast path is not sure check that the full path answers.
The scripts here run every call in their own interpreter (``prefork=False``): that is the first call on
a node, and every call with ``--no-prefork``; tests/ganeti/test_prefork.py covers the verb server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from provider.datapath import loop
from tests.conftest import StoreEnv, make_store_env
from tests.ganeti.conftest import Installed, add_image, installed_on, last_line, make_installed
from tests.helpers import need_root

VOL = "0b6e3f2a-1c1d-4f0e-8a55-6d0c1e2f3a4b.ext.disk0"
# What a fast call must not load: the ORM, the HTTP client, the services, backends and customization.
HEAVY = (
    "sqlalchemy",
    "requests",
    "urllib3",
    "tqdm",
    "jinja2",
    "falcon",
    "provider.services",
    "provider.backends",
    "provider.api",
)
HEAVY_FOR_HELP = (*HEAVY, "yaml", "psycopg", "customization", "provider.catalog", "provider.config")
_IMPORT = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$")


def imported(stderr: str) -> set[str]:
    """The modules an interpreter run with PYTHONPROFILEIMPORTTIME=1 imported."""
    return {m.group(1) for m in map(_IMPORT.match, stderr.splitlines()) if m}


def heavy(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.fixture
def installed(plain_env: StoreEnv, tmp_path: Path) -> Installed:
    return make_installed(plain_env, tmp_path / "ganeti", prefork=False)


@pytest.fixture(params=["qcow2", "reflink"])
def installed_each(request: pytest.FixtureRequest, tmp_path: Path) -> Installed:
    return installed_on(request, tmp_path, prefork=False)


def timed_ext(
    installed: Installed, verb: str, **variables: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    proc = installed.ext(verb, PYTHONPROFILEIMPORTTIME="1", **variables)
    return proc, imported(proc.stderr)


def without_importtime(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if not line.startswith("import time:"))


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["-h"]])
def test_version_and_help_import_no_database_or_http_library(args: list[str]) -> None:
    atoll = Path(sys.executable).with_name("atoll")
    cmd = [str(atoll)] if atoll.exists() else [sys.executable, "-m", "provider.cli"]
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    modules = imported(proc.stderr)
    assert "click" in modules and "provider.cli" in modules  # the measurement itself works
    assert heavy(modules, HEAVY_FOR_HELP) == []
    if args == ["--version"]:
        assert proc.stdout == "atoll, version 0.1.0\n"
    else:
        for name in ("object", "image", "volume", "resource", "fsck", "customize", "ganeti", "init", "serve"):
            assert re.search(rf"^  {name}\s+\S", proc.stdout, re.M), name


def test_attach_again_verify_setinfo_open_close_skip_the_services(
    installed_each: Installed, tmp_path: Path
) -> None:
    need_root()
    installed, image = installed_each, add_image(installed_each, tmp_path)
    assert installed.ext("create", VOL_NAME=VOL, VOL_SIZE="64", EXTP_ORIGIN=image).returncode == 0
    for access in ("kernelspace", "userspace"):
        first, modules = timed_ext(installed, "attach", VOL_NAME=VOL, EXTP_ACCESS=access)
        assert first.returncode == 0, first.stderr
        assert "sqlalchemy" in modules  # the first attach brings the data path up through the services
        again, modules = timed_ext(installed, "attach", VOL_NAME=VOL, EXTP_ACCESS=access)
        assert again.returncode == 0, again.stderr
        assert again.stdout == first.stdout and heavy(modules, HEAVY) == []
        for verb in ("open", "close"):
            proc, modules = timed_ext(installed, verb, VOL_NAME=VOL, VOL_OPEN_EXCLUSIVE="True")
            assert proc.returncode == 0 and heavy(modules, HEAVY) == [], proc.stderr
        assert installed.ext("detach", VOL_NAME=VOL).returncode == 0
    proc, modules = timed_ext(installed, "verify", VOL_NAME=VOL, EXTP_ORIGIN=image)
    assert proc.returncode == 0 and heavy(modules, HEAVY) == [], proc.stderr
    assert "is usable" in proc.stderr
    proc, modules = timed_ext(installed, "setinfo", VOL_NAME=VOL, VOL_METADATA="originstname+web1")
    assert proc.returncode == 0 and heavy(modules, HEAVY) == [], proc.stderr
    vol = installed.env.open().volumes.show(VOL)
    assert vol.volume is not None
    assert (
        vol.volume.ganeti["VOL_METADATA"] == "originstname+web1" and vol.volume.ganeti["instance"] == "web1"
    )
    assert vol.volume.ganeti["VOL_NAME"] == VOL  # merged, not replaced
    assert installed.ext("remove", VOL_NAME=VOL).returncode == 0


def test_attach_of_a_broken_data_path_takes_the_full_path_and_repairs_it(
    installed_each: Installed, tmp_path: Path
) -> None:
    need_root()
    installed, image = installed_each, add_image(installed_each, tmp_path)
    assert installed.ext("create", VOL_NAME=VOL, VOL_SIZE="64", EXTP_ORIGIN=image).returncode == 0
    first = installed.ext("attach", VOL_NAME=VOL)
    device = first.stdout.splitlines()[0]
    subprocess.run(["losetup", "-d", device], check=True)  # the data path breaks behind Atoll's back
    again, modules = timed_ext(installed, "attach", VOL_NAME=VOL)
    assert again.returncode == 0, again.stderr
    assert "sqlalchemy" in modules and "bringing it up again" in again.stderr
    new_device = again.stdout.splitlines()[0]
    assert loop.backing_file(new_device) is not None
    # attached in kernelspace, asked in userspace: the full path refuses, as before
    other = installed.ext("attach", VOL_NAME=VOL, EXTP_ACCESS="userspace")
    assert other.returncode == 1 and "detach it first" in last_line(other.stderr)
    assert installed.ext("remove", VOL_NAME=VOL).returncode == 0


def test_fast_verbs_fall_back_with_the_full_path_errors(installed: Installed, tmp_path: Path) -> None:
    image = add_image(installed, tmp_path)
    proc = installed.ext("verify", VOL_NAME=VOL, EXTP_ORIGIN="nope")
    assert proc.returncode == 1 and last_line(proc.stderr) == "atoll verify: error: origin 'nope' not found"
    proc = installed.ext("setinfo", VOL_NAME=VOL, VOL_METADATA="originstname+x")
    assert (
        proc.returncode == 1 and last_line(proc.stderr) == f"atoll setinfo: error: volume {VOL!r} not found"
    )
    for verb in ("open", "close"):
        assert installed.ext(verb, VOL_NAME=VOL).returncode == 0
    proc = installed.ext("verify", VOL_NAME=VOL, EXTP_ORIGIN=image, EXTP_ORIGN="typo")
    assert proc.returncode == 2 and "unknown disk parameter(s) orign" in last_line(proc.stderr)


def test_verify_on_a_new_store_creates_its_catalog(tmp_path: Path) -> None:
    """No catalog yet: the fast path creates nothing and the full path initializes the store."""
    inst = make_installed(make_store_env("qcow2", tmp_path / "store", ""), tmp_path / "ganeti", prefork=False)
    catalog = inst.env.config.store.path / "catalog.sqlite"
    assert not catalog.exists()
    proc, modules = timed_ext(inst, "verify", VOL_NAME=VOL)
    assert proc.returncode == 0, proc.stderr
    assert catalog.exists() and "sqlalchemy" in modules
    proc, modules = timed_ext(inst, "verify", VOL_NAME=VOL)
    assert proc.returncode == 0 and heavy(modules, HEAVY) == [], without_importtime(proc.stderr)


def test_setinfo_and_verify_on_each_catalog(catalog_url: str, tmp_path: Path) -> None:
    """PostgreSQL too: the fast path speaks psycopg directly, without SQLAlchemy."""
    env = make_store_env("qcow2", tmp_path / "store", catalog_url)
    inst = make_installed(env, tmp_path / "ganeti", prefork=False)
    image = add_image(inst, tmp_path)
    assert inst.ext("create", VOL_NAME=VOL, VOL_SIZE="64", EXTP_ORIGIN=image).returncode == 0
    proc, modules = timed_ext(inst, "setinfo", VOL_NAME=VOL, VOL_METADATA="originstname+db1")
    assert proc.returncode == 0 and heavy(modules, HEAVY) == [], without_importtime(proc.stderr)
    proc, modules = timed_ext(inst, "verify", VOL_NAME=VOL, EXTP_ORIGIN="images/img.raw")
    assert proc.returncode == 0 and heavy(modules, HEAVY) == [], without_importtime(proc.stderr)
    for verb in ("open", "close"):
        proc, modules = timed_ext(inst, verb, VOL_NAME=VOL)
        assert proc.returncode == 0 and heavy(modules, HEAVY) == [], without_importtime(proc.stderr)
    vol = inst.env.open().volumes.show(VOL)
    assert vol.volume is not None and vol.volume.ganeti["instance"] == "db1"
