"""The ExtStorage environment: sizes in MiB, EXTP_* parameters, validation with one clear message."""

from __future__ import annotations

import pytest

from provider.errors import UsageError
from provider.ganeti import env as ext_env

VOL = "0b5e43c7-4a0b-4f4b-9d37-2c6d3f0e1a11.ext.disk0"


def test_sizes_are_mib_and_params_lower_case() -> None:
    env = ext_env.parse(
        {
            "VOL_NAME": VOL,
            "VOL_SIZE": "100",
            "VOL_NEW_SIZE": "152",
            "VOL_CNAME": "root",
            "VOL_UUID": "u-1",
            "EXTP_PROVIDER": "atoll",
            "EXTP_ORIGIN": "debian-12",
            "EXTP_ACCESS": "userspace",
        }
    )
    assert (env.size, env.new_size) == (100 << 20, 152 << 20)
    assert env.origin == "debian-12" and env.userspace
    assert env.identity() == {
        "VOL_NAME": VOL,
        "provider": "atoll",
        "VOL_CNAME": "root",
        "VOL_UUID": "u-1",
        "origin": "debian-12",
    }


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        pytest.param({}, "VOL_NAME is not set", id="no-name"),
        pytest.param(
            {"VOL_NAME": VOL, "VOL_SIZE": "10G"}, "VOL_SIZE='10G' is not a whole number of MiB", id="unit"
        ),
        pytest.param({"VOL_NAME": VOL, "VOL_SIZE": "-1"}, "is not a whole number of MiB", id="negative"),
        pytest.param({"VOL_NAME": "../etc"}, "invalid VOL_NAME", id="bad-name"),
    ],
)
def test_bad_environment(variables: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        ext_env.parse(variables)


def test_unknown_parameter_is_refused_at_create() -> None:
    env = ext_env.parse({"VOL_NAME": VOL, "EXTP_ORIGN": "debian", "EXTP_PROVIDER": "atoll"})
    with pytest.raises(UsageError, match=r"unknown disk parameter\(s\) orign for provider atoll"):
        env.check_params()


def test_snapshot_and_parameters() -> None:
    env = ext_env.parse({"VOL_NAME": VOL + ".snap", "EXTP_ORIGIN_SIZE": "1048576", "EXTP_REUSE_DATA": "True"})
    assert env.is_snapshot and env.reuse_data and env.origin_size == 1 << 20
    assert ext_env.parse({"VOL_NAME": VOL, "EXTP_ORIGIN_SIZE": "-1"}).origin_size is None
    assert ext_env.instance_of("originstname+web1") == "web1"
    assert ext_env.instance_of("something-else") is None
