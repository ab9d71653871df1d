"""``image register`` runs the same format inspector as imports: only raw (or ISO) data is registered."""

from __future__ import annotations

from pathlib import Path

import pytest

from provider.errors import BadConfiguration, InvalidInput
from provider.imaging.inspect import ImageRefused
from tests.conftest import StoreEnv
from tests.imaging.conftest import imports_env


def _upload(env: StoreEnv, name: str, path: Path) -> None:
    store = env.open()
    with open(path, "rb") as f:
        store.objects.upload(f"images/{name}", f)


@pytest.mark.parametrize("sample", ["qcow2", "backing", "vmdk", "vhdx", "vdi", "vpc-fixed"])
def test_register_refuses_non_raw_objects(ienv: StoreEnv, samples: dict[str, Path], sample: str) -> None:
    _upload(ienv, sample, samples[sample])
    proc = ienv.cli("image", "register", f"images/{sample}", "--name", sample, check=False)
    assert proc.returncode == 1
    assert "image, not a raw disk: import it instead (atoll image import" in proc.stderr.decode()
    assert ienv.open().images.list() == []


def test_register_checks_declared_format_and_size(ienv: StoreEnv, samples: dict[str, Path]) -> None:
    store = ienv.open()
    _upload(ienv, "iso", samples["iso"])
    _upload(ienv, "raw", samples["raw"])
    with pytest.raises(ImageRefused, match="declared iso but the data is a raw image"):
        store.images.register("images/raw", "r", disk_format="iso")
    assert store.images.register("images/iso", "cd", disk_format="iso").image.disk_format == "iso"
    small = imports_env(ienv.config.store.path, {"max_virtual_size": "32M"})
    with pytest.raises(ImageRefused, match=r"virtual size 64\.0 MiB .* above the limit of 32\.0 MiB"):
        small.open().images.register("images/raw", "r")
    with pytest.raises(InvalidInput, match="disk format 'qcow2' cannot be registered"):
        store.images.register("images/raw", "r", disk_format="qcow2")
    assert store.images.register("images/raw", "r").image.disk_format == "raw"


@pytest.mark.parametrize(
    "imports, message",
    [
        ({"max_virtual_size": "lots"}, "imports.max_virtual_size: invalid size 'lots'"),
        ({"allow_networks": ["127.0.0.300/32"]}, "does not appear to be an IPv4 or IPv6 network"),
        ({"workers": 0}, "workers and max_attempts must be at least 1"),
        ({"bogus": 1}, "unknown key(s) in imports: bogus"),
    ],
)
def test_bad_imports_configuration(tmp_path: Path, imports: dict[str, object], message: str) -> None:
    with pytest.raises(BadConfiguration) as err:
        imports_env(tmp_path, imports)
    assert message in str(err.value)
