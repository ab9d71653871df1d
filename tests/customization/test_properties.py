"""Image property validation: snf-image names, values and boolean words; exact error messages."""

from __future__ import annotations

import pytest

from customization.errors import PropertyError
from customization.properties import SwapSpec, validate


@pytest.mark.parametrize("word", ["yes", "YES", "true", "on", "1", "set", " Yes "])
def test_true_words(word: str) -> None:
    assert validate({"EXCLUDE_ALL_TASKS": word}).exclude_all is True


@pytest.mark.parametrize("word", ["no", "false", "OFF", "0", "unset"])
def test_false_words(word: str) -> None:
    assert validate({"EXCLUDE_ALL_TASKS": word}).exclude_all is False


def test_empty_boolean_is_false_with_a_warning() -> None:
    props = validate({"exclude_all_tasks": ""})
    assert props.exclude_all is False
    assert props.warnings == ("EXCLUDE_ALL_TASKS is set but empty; taken as false",)


def test_unknown_boolean_word_is_an_error() -> None:
    with pytest.raises(PropertyError) as err:
        validate({"EXCLUDE_ALL_TASKS": "maybe"})
    assert str(err.value) == (
        "EXCLUDE_ALL_TASKS='maybe' is not a boolean (use one of yes/no, true/false, on/off, 1/0)"
    )


def test_names_are_case_insensitive_and_typed() -> None:
    props = validate(
        {
            "osfamily": "Linux",
            "Root_Partition": "2",
            "users": "root  user",
            "passwd_hashing_method": "YESCRYPT",
        }
    )
    assert (props.os_family, props.root_partition, props.users) == ("linux", 2, ("root", "user"))
    assert props.passwd_hashing_method == "yescrypt"


@pytest.mark.parametrize(
    "key", ["EXCLUDE_TASK_AssignHostname", "exclude_task_assignhostname", "EXCLUDE_TASK_ASSIGNHOSTNAME"]
)
def test_exclude_task_is_case_insensitive(key: str) -> None:
    props = validate({key: "yes"})
    assert props.is_excluded("AssignHostname")
    assert props.is_excluded("assignhostname")
    assert not props.is_excluded("ChangePassword")


def test_exclude_task_of_an_snf_image_task_this_engine_lacks_is_accepted() -> None:
    assert validate({"EXCLUDE_TASK_ConfigureNetwork": "yes"}).is_excluded("ConfigureNetwork")


def test_exclude_task_with_a_typo_is_an_error() -> None:
    with pytest.raises(
        PropertyError, match="EXCLUDE_TASK_ASSIGNHOSTNAM: there is no task called 'ASSIGNHOSTNAM'"
    ):
        validate({"EXCLUDE_TASK_AssignHostnam": "yes"})


def test_group_switches() -> None:
    props = validate({"EXCLUDE_MOUNTED_TASKS": "yes", "EXCLUDE_FilesystemResize_TASKS": "true"})
    assert props.exclude_mounted and props.exclude_resize


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"OSFAMILY": "plan9"}, "OSFAMILY='plan9' is not one of linux, windows, windows-legacy, freebsd"),
        ({"ROOT_PARTITION": "0"}, "ROOT_PARTITION='0' is not a partition number"),
        ({"ROOT_PARTITION": "sda1"}, "ROOT_PARTITION='sda1' is not a partition number"),
        ({"USERS": "root bad:user"}, "USERS: 'bad:user' is not a valid user name"),
        ({"USERS": "   "}, "USERS is empty"),
        ({"PASSWD_HASHING_METHOD": "sha3"}, "PASSWD_HASHING_METHOD='sha3' is not one of md5, sha1"),
        ({"SWAP": "2:"}, "SWAP='2:' is not valid"),
        ({"SWAP": "0:512"}, "SWAP='0:512' is not valid"),
        ({"CUSTOM_TASK": "not base64!"}, "CUSTOM_TASK is not valid base64"),
        ({"users": "root", "USERS": "user"}, "property USERS is given twice with different values"),
    ],
)
def test_malformed_values_are_clear_errors(props: dict[str, str], message: str) -> None:
    with pytest.raises(PropertyError) as err:
        validate(props)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_swap_forms() -> None:
    assert validate({"SWAP": "2:512"}).swap == SwapSpec(partition=2, size_mib=512)
    assert validate({"SWAP": "B"}).swap == SwapSpec(disk_letter="b")
    assert validate({"SWAP": ""}).swap is None


def test_defaults_and_unknown_names() -> None:
    props = validate({"OS": "debian", "SOMETHING_ELSE": "x", "sortorder": "1"})
    assert props.users == ("root",)
    assert props.passwd_hashing_method == "sha512"
    assert props.ignored == ("SOMETHING_ELSE",)
    assert not props.exclude_all


def test_non_string_values_are_stringified_like_snf_image() -> None:
    assert validate({"ROOT_PARTITION": 1, "EXCLUDE_ALL_TASKS": True}).root_partition == 1
