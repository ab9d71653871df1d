"""Ganeti hooks of Atoll: grow the root partition and filesystem after ``grow-disk`` of a stopped
instance, and keep the catalog in step when an instance is renamed or removed.

Run by the shims in ``/etc/ganeti/hooks/<path>-post.d/``: ``python -m provider.ganeti.hooks <hook>``.
Post hooks only warn on failure, so each ends with one clear line and acts on the primary node only.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from customization.params import InstanceParams
from provider.ganeti.extstorage import find, find_or_none
from provider.ganeti.osglue import properties_of, raw_path
from provider.ganeti.script import open_store, run
from provider.services import Store
from provider.utils.props import is_snapshot

LOG = logging.getLogger(__name__)
PROVIDER = "atoll"
RUNNING = ("up", "true")

USAGE = """\
usage: <hooks dir>/<path>-post.d/<name>   (run by Ganeti with GANETI_* in the environment)

Atoll hooks: grow-root (disk-grow post: grow the root partition and filesystem of a stopped instance),
rename (instance-rename post), remove (instance-remove post: forget volumes Ganeti left behind)."""


@dataclass(frozen=True)
class Disk:
    index: int
    vol_name: str


@dataclass(frozen=True)
class HookEnv:
    environ: Mapping[str, str]

    def get(self, key: str, default: str = "") -> str:
        return self.environ.get("GANETI_" + key, default)

    @property
    def post(self) -> bool:
        return self.get("HOOKS_PHASE").lower() == "post"

    @property
    def instance(self) -> str:
        return self.get("INSTANCE_NAME")

    @property
    def on_primary(self) -> bool:
        primary = self.get("INSTANCE_PRIMARY")
        return not primary or primary in (socket.getfqdn(), socket.gethostname())

    @property
    def running(self) -> bool:
        status = self.get("POST_INSTANCE_STATUS") or self.get("INSTANCE_STATUS")
        return status.lower() in RUNNING

    def atoll_disks(self) -> Iterator[Disk]:
        """The instance's disks that live in Atoll (template ext, provider atoll)."""
        count = int(self.get("INSTANCE_DISK_COUNT", "0") or 0)
        for i in range(count):
            if self.get(f"INSTANCE_DISK{i}_PROVIDER") == PROVIDER and self.get(f"INSTANCE_DISK{i}_ID"):
                yield Disk(i, self.get(f"INSTANCE_DISK{i}_ID"))


def _applies(hook: HookEnv) -> bool:
    if not hook.post:
        LOG.info("nothing to do in the %s phase", hook.get("HOOKS_PHASE") or "unknown")
        return False
    if not hook.on_primary:
        LOG.info("not the primary node of %s: nothing to do here", hook.instance)
        return False
    return True


def grow_root(environ: Mapping[str, str]) -> None:
    hook = HookEnv(environ)
    if not _applies(hook):
        return
    index = int(hook.get("DISK", "-1") or -1)
    disk = next((d for d in hook.atoll_disks() if d.index == index), None)
    if index != 0 or disk is None:
        LOG.info("disk %s of %s is not an Atoll root disk: nothing to grow inside", index, hook.instance)
        return
    if hook.running:
        LOG.info("%s is running: grow its partition from inside the guest (e.g. growpart)", hook.instance)
        return
    store = open_store()
    grow_inside(store, disk.vol_name)


def grow_inside(store: Store, vol_name: str) -> None:
    """Grow the root partition and filesystem of the (detached) volume to its full size."""
    vol = find(store, vol_name)
    properties = properties_of(store, vol)
    if is_snapshot(properties):
        LOG.info("volume %s comes from a snapshot (EXCLUDE_ALL_TASKS): left as it is", vol.name)
        return
    # Only the tasks that need no guest filesystem edits run: the partition table and the resize.
    properties = {**properties, "EXCLUDE_MOUNTED_TASKS": "yes"}
    with raw_path(store, vol, None) as path:
        report = store.customize.disk(path, properties, InstanceParams())
    LOG.info("volume %s: partition and filesystem grown in %.1f s", vol.name, report.seconds)


def rename(environ: Mapping[str, str]) -> None:
    hook = HookEnv(environ)
    if not _applies(hook):
        return
    new_name = hook.get("INSTANCE_NEW_NAME") or hook.instance
    store = open_store()
    for disk in hook.atoll_disks():
        store.volumes.set_ganeti(find(store, disk.vol_name).id, {"instance": new_name})
        LOG.info("volume %s now belongs to instance %s", disk.vol_name, new_name)


def remove(environ: Mapping[str, str]) -> None:
    hook = HookEnv(environ)
    if not _applies(hook):
        return
    store = open_store()
    for disk in hook.atoll_disks():
        vol = find_or_none(store, disk.vol_name)
        if vol is None:
            continue
        LOG.warning("instance %s is gone but its volume %s is not: removing it", hook.instance, vol.name)
        store.volumes.detach(vol.id)
        store.volumes.delete(vol.id)


ACTIONS = {"grow-root": grow_root, "rename": rename, "remove": remove}
# (Ganeti hook path, file name in <path>-post.d, action): names match ^[A-Za-z0-9_-]+$.
HOOKS = (
    ("disk-grow", "60-atoll-grow-root", "grow-root"),
    ("instance-rename", "60-atoll-rename", "rename"),
    ("instance-remove", "60-atoll-remove", "remove"),
)


def main(argv: list[str] | None = None) -> int:
    return run("atoll-hook", ACTIONS, sys.argv[1:] if argv is None else argv, USAGE)


if __name__ == "__main__":
    sys.exit(main())
