"""Every task module is named after its task (``META.name`` snake_cased), so the file is easy to find."""

from __future__ import annotations

import re

from customization import tasks


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def test_task_modules_are_named_after_their_task() -> None:
    modules = {module.__name__.rsplit(".", 1)[1]: module.META.name for module in tasks.ALL}
    assert {name: snake(task) for name, task in modules.items()} == {name: name for name in modules}
    assert snake("InjectSSHKeys") == "inject_ssh_keys" and snake("DeleteSSHKeys") == "delete_ssh_keys"
