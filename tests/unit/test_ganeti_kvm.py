"""The Ganeti-version rules for userspace URIs, and which QEMU drive a volume is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provider.errors import CapabilityNotSupported
from provider.ganeti import kvm


def test_ganeti_version_is_the_directory_default_points_to(tmp_path: Path) -> None:
    (tmp_path / "3.1").mkdir()
    (tmp_path / "default").symlink_to(tmp_path / "3.1")
    assert kvm.ganeti_version(tmp_path / "default") == (3, 1)
    assert kvm.ganeti_version(tmp_path / "missing") is None


def test_userspace_uris_for_each_ganeti() -> None:
    for backend in ("qcow2", "reflink", "rbd"):
        kvm.check_userspace(backend, (3, 0))
        kvm.check_userspace(backend, None)
    kvm.check_userspace("rbd", (3, 1))
    for backend in ("qcow2", "reflink"):
        with pytest.raises(CapabilityNotSupported, match="access=kernelspace"):
            kvm.check_userspace(backend, (3, 1))
    assert kvm.drive_uri("nbd:unix:/run/a,b/nbd.sock") == "nbd:unix:/run/a,,b/nbd.sock"


def test_the_drive_that_opened_a_volume_is_found_by_its_device_or_uri() -> None:
    assert kvm.opened("/dev/loop3", ["/dev/loop3"])
    assert not kvm.opened("/dev/loop30", ["/dev/loop3"])
    assert kvm.opened("/dev/stdin", [os.path.realpath("/dev/stdin")])  # through a symlink, as Ganeti's
    assert kvm.opened("nbd+unix://?socket=/srv/run/x/nbd.sock", ["nbd:unix:/srv/run/x/nbd.sock"])
    assert not kvm.notify_grow(None, ["/dev/loop3"], 1 << 30)
    assert not kvm.notify_grow("no-such-instance", ["/dev/loop3"], 1 << 30, ctrl_dir=Path("/nonexistent"))
