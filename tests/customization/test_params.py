"""Instance parameters: validation, secrets that never show, snf-image personality JSON."""

from __future__ import annotations

import base64
import json
import pickle

import pytest

from customization.errors import ParameterError, PropertyError
from customization.params import InjectedFile, InstanceParams, Secret, personality_from_json

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxU9oG3rSSjtyBBVJPXtZxv6g7mvhJkCz5E2sPqYQ8K test@host"


def test_secret_never_shows() -> None:
    secret = Secret("hunter2")
    params = InstanceParams(password=secret)
    for text in (repr(secret), str(secret), repr(params), f"{params}"):
        assert "hunter2" not in text
    assert secret.reveal() == "hunter2"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_password_and_hash_are_exclusive() -> None:
    with pytest.raises(ParameterError, match="either a password or a password hash"):
        InstanceParams(password=Secret("a"), password_hash="$6$salt$abc")


def test_plain_string_password_is_refused() -> None:
    with pytest.raises(ParameterError, match=r"wrapped in customization\.params\.Secret"):
        InstanceParams(password="plain")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["vm1", "web-01.example.org", "a" * 63])
def test_good_hostnames(name: str) -> None:
    assert InstanceParams(hostname=name).hostname == name


@pytest.mark.parametrize("name", ["", "-vm", "vm_1", "a" * 64, "x.", "vm 1", "vm\n1", "a..b"])
def test_bad_hostnames(name: str) -> None:
    with pytest.raises(ParameterError, match="hostname"):
        InstanceParams(hostname=name)


@pytest.mark.parametrize("value", ["$6$salt$abc/DEF.123", "$y$j9T$abc$def", "$5$rounds=6000$s$h"])
def test_good_hashes(value: str) -> None:
    assert InstanceParams(password_hash=value).password_hash == value


@pytest.mark.parametrize("value", ["plaintext", "$6$salt$abc:def", "$6$x$y\nroot::0"])
def test_bad_hashes(value: str) -> None:
    with pytest.raises(ParameterError, match=r"not a crypt\(3\) hash"):
        InstanceParams(password_hash=value)


def test_ssh_keys_are_checked() -> None:
    assert InstanceParams(ssh_keys=(KEY,)).ssh_keys == (KEY,)
    assert InstanceParams(ssh_keys=('from="10.0.0.1" ' + KEY,)).ssh_keys
    for bad, why in (
        ("ssh-ed25519 !!!", "not base64"),
        ("ssh-rsa " + KEY.split()[1], "does not match its type"),
        ("hello world", "not an SSH public key"),
        (KEY + "\nssh-ed25519 AAAA", "one non-empty line"),
    ):
        with pytest.raises(ParameterError, match=why):
            InstanceParams(ssh_keys=(bad,))


@pytest.mark.parametrize("path", ["relative", "/etc/../shadow", "/etc//x", "/etc/", "/a/./b"])
def test_injected_file_paths(path: str) -> None:
    with pytest.raises(ParameterError, match="injected file path"):
        InjectedFile(path, b"x")


def test_injected_file_repr_hides_content() -> None:
    item = InjectedFile("/etc/secret", b"TOPSECRET", "root", "root", 0o600)
    assert "TOPSECRET" not in repr(item)
    with pytest.raises(ParameterError, match="mode"):
        InjectedFile("/x", b"", mode=0o17777)
    with pytest.raises(ParameterError, match="owner"):
        InjectedFile("/x", b"", owner="bad name")


def test_personality_json_like_snf_image() -> None:
    text = json.dumps(
        [
            {
                "path": "/etc/motd",
                "contents": base64.b64encode(b"hi\n").decode(),
                "owner": "user",
                "mode": 420,
            },
            {"path": "/root/x", "contents": ""},
        ]
    )
    files = personality_from_json(text)
    assert files[0] == InjectedFile("/etc/motd", b"hi\n", "user", "root", 0o644)
    assert files[1].mode == 0o440
    with pytest.raises(ParameterError, match="not base64"):
        personality_from_json('[{"path": "/x", "contents": "***"}]')
    with pytest.raises(ParameterError, match="JSON list"):
        personality_from_json('{"path": "/x"}')


def test_users_override_and_instance_properties() -> None:
    params = InstanceParams(users=("root", "user"), properties={"passwd_hashing_method": "yescrypt"})
    merged = params.effective_properties({"USERS": "root", "PASSWD_HASHING_METHOD": "sha512"})
    assert merged["USERS"] == "root user"
    assert merged["PASSWD_HASHING_METHOD"] == "yescrypt"
    with pytest.raises(PropertyError, match="not a valid user name"):
        InstanceParams(users=("ro:ot",))
