"""ChangeMachineId: a new random id in /etc/machine-id; the D-Bus symlink is left alone."""

from __future__ import annotations

import re
from pathlib import Path

from customization.params import InstanceParams
from tests.customization import verify
from tests.customization.conftest import MakeImage
from tests.customization.runner import run


def test_machine_id_is_new_and_mode_kept(make_image: MakeImage) -> None:
    info = make_image()
    run(info, InstanceParams(), ["ChangeMachineId"])
    with verify.guest_root(Path(info.path), 1, "ext4") as root:
        text = (root / "etc/machine-id").read_text()
        assert re.fullmatch(r"[0-9a-f]{32}\n", text)
        assert text != "0123456789abcdef0123456789abcdef\n"
        assert (root / "etc/machine-id").stat().st_mode & 0o777 == 0o444
        assert (root / "var/lib/dbus/machine-id").is_symlink()
