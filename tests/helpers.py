"""The rule for tests that need root, a tool or a daemon.

On a developer's laptop such a test skips with the reason. In CI (``CI=true``) nothing may skip for a
missing dependency: ``.ci/run`` installs and starts everything, so a missing piece fails the test instead.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip the calling test with ``reason`` unless ``condition`` holds; in CI fail instead of skipping."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this, but: {reason}", pytrace=False)
    pytest.skip(reason)


def need_root() -> None:
    need(os.geteuid() == 0, "needs root (loop devices, mounts)")


def need_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    need(not missing, f"needs {', '.join(missing)} (run scripts/install-deps.sh)")
