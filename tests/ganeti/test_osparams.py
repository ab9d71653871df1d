"""OS parameters of OS ``atoll``: snf-image names, validation before any disk is touched, no secret in
any message."""

from __future__ import annotations

import base64
import json

import pytest

from customization.errors import CustomizationError
from customization.params import Secret
from provider.ganeti import osparams

KEY = "ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + bytes(32)).decode() + " me@laptop"
SECRET = "correct horse battery staple"


def test_parameters_build_instance_params() -> None:
    personality = json.dumps(
        [{"path": "/etc/motd", "contents": base64.b64encode(b"hi\n").decode(), "mode": 420}]
    )
    req = osparams.parse(
        {
            "OSP_IMG_ID": "debian-12",
            "OSP_IMG_FORMAT": "diskdump",
            "OSP_IMG_PASSWD": SECRET,
            "OSP_IMG_PROPERTIES": json.dumps({"OSFAMILY": "linux", "ROOT_PARTITION": 1}),
            "OSP_INST_PROPERTIES": json.dumps({"USERS": "root user"}),
            "OSP_IMG_PERSONALITY": personality,
            "OSP_AUTH_KEYS": KEY + "\n# a comment\n\n",
        },
        hostname="web1.example.org",
    )
    assert req.img_id == "debian-12"
    assert req.img_properties == {"OSFAMILY": "linux", "ROOT_PARTITION": "1"}
    assert req.params.hostname == "web1.example.org"
    assert req.params.password == Secret(SECRET)
    assert req.params.ssh_keys == (KEY,)
    assert req.params.files[0].path == "/etc/motd" and req.params.files[0].mode == 0o644
    assert req.params.properties == {"USERS": "root user"}
    assert SECRET not in repr(req)


def test_hostname_parameter_overrides_instance_name() -> None:
    req = osparams.parse({"OSP_HOSTNAME": "db1", "OSP_IMG_ID": "null"}, hostname="inst-17")
    assert req.params.hostname == "db1" and req.img_id is None


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        pytest.param({"OSP_IMG_FORMAT": "extdump"}, "img_format 'extdump' is not supported", id="format"),
        pytest.param({"OSP_IMG_PROPERTIES": "{oops"}, "img_properties is not valid JSON", id="json"),
        pytest.param({"OSP_IMG_PROPERTIES": "[1]"}, "img_properties must be a JSON object", id="not-object"),
        pytest.param(
            {"OSP_IMG_PROPERTIES": '{"OSFAMILY": "plan9"}'}, "OSFAMILY='plan9' is not one of", id="prop"
        ),
        pytest.param({"OSP_IMG_PASSWD": SECRET, "OSP_IMG_PASSWD_HASH": "$6$x$y"}, "not both", id="both"),
        pytest.param({"OSP_IMG_PASSWD": SECRET + "\n"}, "must not contain a newline", id="newline"),
        pytest.param({"OSP_AUTH_KEYS": "ssh-rsa " + SECRET}, "SSH key", id="key"),
        pytest.param({"OSP_HOSTNAME": "bad_name!"}, "hostname 'bad_name!' is not valid", id="hostname"),
        pytest.param({"OSP_IMG_PERSONALITY": '[{"path": "etc/x", "contents": ""}]'}, "absolute", id="file"),
    ],
)
def test_invalid_parameters_fail_with_one_line_and_no_secret(variables: dict[str, str], message: str) -> None:
    with pytest.raises(CustomizationError) as info:
        osparams.parse(variables, hostname="vm1")
    text = str(info.value)
    assert message in text and "\n" not in text
    assert SECRET not in text
