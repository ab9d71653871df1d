"""The RSA host key reserve: each key made ahead of time goes to exactly one customization, never to disk
for longer than ssh-keygen needs, and a reserve that cannot make keys leaves customizations making their own.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from customization import hostkeys
from customization.params import InstanceParams
from tests.customization import verify
from tests.customization.conftest import MakeImage
from tests.customization.runner import run


def _fill(reserve: hostkeys.Reserve, count: int) -> None:
    deadline = time.monotonic() + 120
    while reserve.ready() < count:
        assert not reserve.failed
        assert time.monotonic() < deadline, "the reserve never filled"
        reserve.poll()
        time.sleep(0.05)


@pytest.fixture
def reserve(tmp_path: Path) -> Iterator[hostkeys.Reserve]:
    parent = tmp_path / "private"
    parent.mkdir(mode=0o700)
    made = hostkeys.Reserve(parent, size=2)
    yield made
    made.close()
    assert hostkeys.reserve_fd() is None


def _public_body(public: bytes) -> str:
    return public.decode().split()[1]


def _valid_pair(private: bytes, public: bytes, tmp_path: Path) -> None:
    path = tmp_path / "check.key"
    path.write_bytes(private)
    path.chmod(0o600)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True, check=True)
    assert _public_body(derived.stdout) == _public_body(public)
    path.unlink()


def _take_in_child(reserve: hostkeys.Reserve) -> bytes:
    """What a forked child of the reserve's owner takes: a public key line, or b"none"."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        reserve.forked()
        taken = hostkeys.take_rsa()
        os.write(w, b"none" if taken is None else taken[1])
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    assert os.waitpid(pid, 0)[1] == 0
    return out


def test_forked_children_take_distinct_keys_and_none_is_left_on_disk(
    reserve: hostkeys.Reserve, tmp_path: Path
) -> None:
    _fill(reserve, 2)
    assert reserve.making is None  # full: nothing more is being made
    assert list(reserve.parent.iterdir()) == []  # the keys live in the pipe only
    taken = [_take_in_child(reserve) for _ in range(3)]
    assert taken[2] == b"none"  # two keys, two takers: the third makes its own
    assert len({_public_body(t) for t in taken[:2]}) == 2
    assert all(t.startswith(b"ssh-rsa ") for t in taken[:2])
    assert reserve.ready() == 0
    reserve.poll()  # the owner refills
    assert reserve.making is not None


def test_a_customization_takes_a_reserved_key_and_names_it(
    reserve: hostkeys.Reserve, make_image: MakeImage, tmp_path: Path
) -> None:
    _fill(reserve, 1)
    reserve.size = 1  # keep the pipe as it is for the next take
    record = os.read(reserve.read_fd, hostkeys.RECORD)
    pair = hostkeys.decode(record)
    assert pair is not None
    os.write(reserve.write_fd, record)  # looked at, put back
    info = make_image(fs="ext4")
    run(info, InstanceParams(hostname="reserved1"), ["DeleteSSHKeys"])
    assert reserve.ready() == 0
    with verify.guest_root(Path(info.path), 1, "ext4") as root:
        private = (root / "etc/ssh/ssh_host_rsa_key").read_bytes()
        public = (root / "etc/ssh/ssh_host_rsa_key.pub").read_bytes()
        assert (root / "etc/ssh/ssh_host_rsa_key").stat().st_mode & 0o777 == 0o600
    assert _public_body(public) == _public_body(pair[1])  # the reserved key, not a new one
    assert public.decode().endswith(" root@reserved1\n")  # with this instance's comment
    _valid_pair(private, public, tmp_path)


def test_a_reserve_whose_keygen_fails_disables_itself(
    reserve: hostkeys.Reserve, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    reserve.close()
    monkeypatch.setattr(hostkeys, "keygen_argv", lambda *_: ["false"])
    failing = hostkeys.Reserve(reserve.parent, size=1)
    try:
        with caplog.at_level(logging.WARNING, logger=hostkeys.__name__):
            deadline = time.monotonic() + 30
            while not failing.failed:
                assert time.monotonic() < deadline
                failing.poll()
                time.sleep(0.02)
        assert "host key reserve disabled" in caplog.text
        failing.poll()
        assert failing.making is None  # no retry loop
        assert hostkeys.take_rsa() is None
        assert list(failing.parent.iterdir()) == []
    finally:
        failing.close()


def test_records_other_than_a_key_pair_are_refused() -> None:
    record = hostkeys.encode(b"private", b"public")
    assert hostkeys.decode(record) == (b"private", b"public")
    assert hostkeys.decode(record[:-1]) is None
    assert hostkeys.decode(b"XXXX" + record[4:]) is None
    assert hostkeys.decode(bytes(hostkeys.RECORD)) is None
    with pytest.raises(ValueError, match="does not fit"):
        hostkeys.encode(b"x" * hostkeys.RECORD, b"")
