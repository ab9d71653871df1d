"""Unit tests of sizes, names, property conventions and configuration parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from atoll_common.booleans import NotABoolean, parse_bool
from provider import config as config_mod
from provider.errors import BadConfiguration, UsageError
from provider.utils.names import check_name, parse_pairs, split_object_ref
from provider.utils.props import is_snapshot
from provider.utils.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("512M", 512 << 20, id="mebibytes"),
        pytest.param("10G", 10 << 30, id="gibibytes"),
        pytest.param("10GiB", 10 << 30, id="iec-suffix"),
        pytest.param("1.5G", 3 << 29, id="fraction"),
        pytest.param("4096", 4096, id="bytes"),
        pytest.param("1t", 1 << 40, id="lowercase"),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "ten", "10X", "-1G", "0", "1.0000001K", "99999999P"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="invalid size"):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(10 << 30) == "10.0 GiB"
    assert format_size(100) == "100 B"


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 129, "a/b", "../x", "a\nb"])
def test_bad_names(name: str) -> None:
    with pytest.raises(UsageError):
        check_name(name)


def test_name_that_looks_like_an_id_is_refused() -> None:
    with pytest.raises(UsageError, match="look like an id"):
        check_name("0f8e4c0e-8a8e-4b8e-9c6b-2a1d1e2f3a4b")


def test_parse_pairs() -> None:
    assert parse_pairs(["OSFAMILY=linux", "USERS=root user"]) == {"OSFAMILY": "linux", "USERS": "root user"}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_pairs(["novalue"])
    with pytest.raises(UsageError, match="invalid property"):
        parse_pairs(["1BAD=x"])


def test_object_refs() -> None:
    assert split_object_ref("images/debian/12.raw") == ("images", "debian/12.raw")
    for bad in ("noslash", "/x", "c/", "c/../x"):
        with pytest.raises(UsageError):
            split_object_ref(bad)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("yes", True), ("True", True), ("on", True), ("1", True), ("set", True), ("no", False), ("off", False),
     ("0", False), ("unset", False), ("", False), (None, False), ("maybe", True)],
)  # fmt: skip
def test_snf_bool_follows_snf_image(value: str | None, expected: bool) -> None:
    assert parse_bool(value, strict=False) is expected


def test_unknown_boolean_word_is_refused_when_written_and_true_when_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(NotABoolean) as err:
        parse_bool("maybe", key="EXCLUDE_ALL_TASKS")
    assert str(err.value) == (
        "EXCLUDE_ALL_TASKS='maybe' is not a boolean (use one of yes/no, true/false, on/off, 1/0)"
    )
    assert err.value.exit_code == 2
    assert parse_bool("maybe", key="EXCLUDE_ALL_TASKS", strict=False) is True
    assert "EXCLUDE_ALL_TASKS='maybe' is not yes/no; treated as true" in caplog.text
    assert is_snapshot({"EXCLUDE_ALL_TASKS": "maybe"})  # an old catalog's image stays a snapshot


def test_snapshot_is_derived_from_properties_case_insensitively() -> None:
    assert is_snapshot({"exclude_all_tasks": "yes"})
    assert not is_snapshot({"OSFAMILY": "linux"})


def test_config_defaults_and_errors(tmp_path: Path) -> None:
    cfg = config_mod.parse({"store": {"path": str(tmp_path)}})
    assert cfg.catalog_url == f"sqlite:///{tmp_path}/catalog.sqlite"
    assert cfg.images.is_protected("atoll_snapshot_of")
    assert not cfg.images.is_protected("OSFAMILY")
    with pytest.raises(BadConfiguration, match="unknown key"):
        config_mod.parse({"store": {"pth": "/x"}})
    with pytest.raises(BadConfiguration, match="not one of"):
        config_mod.parse({"store": {"backend": "zfs"}})
    with pytest.raises(BadConfiguration, match="does not exist"):
        config_mod.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("store: [1, 2")
    with pytest.raises(BadConfiguration, match="cannot read"):
        config_mod.load(bad)
