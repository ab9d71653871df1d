"""The ExtStorage verbs of provider ``atoll``: each reads Ganeti's environment and calls the store.

Run by the one-line shims in the provider directory: ``python -m provider.ganeti.extstorage <verb>``.
Sizes arrive in MiB; ``attach`` prints the device on line 1 and ``kvm:<uri>`` after it, and is
idempotent; ``<VOL_NAME>.snap`` names the snapshot ``gnt-backup export`` takes.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from provider.errors import AlreadyExists, InvalidInput, NotFound, UsageError
from provider.ganeti import env as ext_env
from provider.ganeti.script import open_store, run
from provider.utils.faults import failpoint
from provider.utils.sizes import format_size

if TYPE_CHECKING:
    from provider.services import Resource, Store

LOG = logging.getLogger(__name__)

USAGE = """\
usage: <provider dir>/<verb>   (run by Ganeti with VOL_* and EXTP_* in the environment)

Atoll ExtStorage provider. Verbs: create attach detach remove grow setinfo verify snapshot open close.
  VOL_NAME     volume (Ganeti's <uuid>.ext.diskN; <VOL_NAME>.snap is an export snapshot)
  VOL_SIZE     size in MiB (create), VOL_NEW_SIZE target size in MiB (grow)
  EXTP_ORIGIN  image, snapshot or object the volume is a thin clone of (create)
  EXTP_ORIGIN_SIZE, EXTP_REUSE_DATA, EXTP_ACCESS (kernelspace|userspace)
Configuration: $ATOLL_CONFIG, else /etc/atoll/atoll.yaml."""


def find(store: Store, vol_name: str) -> Resource:
    """The volume (or export snapshot) Ganeti calls ``vol_name``: by name, else by recorded VOL_NAME."""
    try:
        res = store.volumes.get(vol_name, "volume")
    except NotFound:
        try:
            return store.volumes.find_by_ganeti("VOL_NAME", vol_name)
        except NotFound:
            raise NotFound(what="volume", ref=vol_name) from None
    if res.kind not in ("volume", "snapshot"):
        raise InvalidInput("%(ref)r is a %(kind)s, not a volume", ref=vol_name, kind=res.kind)
    return res


def find_or_none(store: Store, vol_name: str) -> Resource | None:
    try:
        return find(store, vol_name)
    except NotFound:
        return None


def create(environ: Mapping[str, str]) -> None:
    env = ext_env.parse(environ)
    env.check_params()
    if env.size is None:
        raise UsageError("VOL_SIZE is not set")
    store = open_store()
    if env.reuse_data:
        _adopt(store, env)
        return
    existing = find_or_none(store, env.vol_name)
    if existing is not None:
        same = existing.volume is not None and existing.volume.ganeti.get("VOL_UUID") == env.uuid
        if not (same and env.uuid and existing.size == env.size):
            raise AlreadyExists(what="volume", name=env.vol_name)
        LOG.info("volume %s already exists for this disk: nothing to do", env.vol_name)
        return
    if env.origin is not None and env.origin_size is not None:
        origin = store.volumes.get(env.origin, "origin")
        if origin.size != env.origin_size:
            raise InvalidInput(
                "origin %(origin)r is %(size)d bytes, not origin_size=%(expected)d",
                origin=env.origin,
                size=origin.size,
                expected=env.origin_size,
            )
    vol = store.volumes.create(env.vol_name, size=env.size, source=env.origin, ganeti=env.identity())
    how = f"thin clone of {env.origin}" if env.origin else "empty"
    LOG.info("created volume %s (%s, %s, backend %s)", vol.name, format_size(vol.size), how, vol.backend)


def _adopt(store: Store, env: ext_env.ExtEnv) -> None:
    """reuse_data: the disk takes over an existing volume (named like VOL_CNAME, else VOL_NAME)."""
    assert env.size is not None
    name = env.cname or env.vol_name
    vol = find(store, name)
    if vol.kind != "volume":
        raise InvalidInput("reuse_data: %(name)r is a %(kind)s, not a volume", name=name, kind=vol.kind)
    if vol.size > env.size:
        raise InvalidInput(
            "reuse_data: volume %(name)s is %(size)s, larger than the disk (%(disk)s)",
            name=name,
            size=format_size(vol.size),
            disk=format_size(env.size),
        )
    if vol.size < env.size:
        store.volumes.grow(vol.id, env.size)
    store.volumes.set_ganeti(vol.id, env.identity())
    LOG.info("disk %s reuses volume %s (%s)", env.vol_name, vol.name, format_size(env.size))


def attach(environ: Mapping[str, str]) -> None:
    env = ext_env.parse(environ)
    store = open_store()
    res = find(store, env.vol_name)
    attachment = store.volumes.attach(res.id, userspace=env.userspace)
    failpoint("ganeti.attach.before-print")  # tests: an attach that dies after the data path is up
    lines = [attachment.device or ""]
    if attachment.uri:
        lines.append(f"kvm:{attachment.uri}")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def detach(environ: Mapping[str, str]) -> None:
    env = ext_env.parse(environ)
    store = open_store()
    res = find_or_none(store, env.vol_name)
    if res is None:
        LOG.warning("volume %s does not exist: nothing to detach", env.vol_name)
        return
    store.volumes.detach(res.id)


def remove(environ: Mapping[str, str]) -> None:
    env = ext_env.parse(environ)
    store = open_store()
    res = find_or_none(store, env.vol_name)
    if res is None:
        LOG.warning("volume %s does not exist: already removed", env.vol_name)
        return
    store.volumes.detach(res.id)  # undoes whatever a failed or forgotten attach left behind
    if res.kind == "snapshot":
        store.images.delete(res.id)
    else:
        store.volumes.delete(res.id)
    LOG.info("removed %s %s", res.kind, env.vol_name)


def grow(environ: Mapping[str, str]) -> None:
    env = ext_env.parse(environ)
    if env.new_size is None:
        raise UsageError("VOL_NEW_SIZE is not set")
    store = open_store()
    vol = store.volumes.grow(find(store, env.vol_name).id, env.new_size)
    LOG.info("volume %s is now %s", env.vol_name, format_size(vol.size))


def setinfo(environ: Mapping[str, str]) -> None:
    env = ext_env.parse(environ)
    store = open_store()
    values = {"VOL_METADATA": env.metadata or "", "instance": ext_env.instance_of(env.metadata)}
    store.volumes.set_ganeti(find(store, env.vol_name).id, values)
    LOG.info("volume %s: metadata %s", env.vol_name, env.metadata or "(empty)")


def snapshot(environ: Mapping[str, str]) -> None:
    env = ext_env.parse(environ)
    if env.snapshot_name is None:
        raise UsageError("VOL_SNAPSHOT_NAME is not set")
    from provider.services.volumes import SNAPSHOT_OF

    store = open_store()
    vol = find(store, env.vol_name)
    stale = find_or_none(store, env.snapshot_name)
    if stale is not None:
        if stale.image is None or stale.image.properties.get(SNAPSHOT_OF) != vol.id:
            raise AlreadyExists(what="snapshot", name=env.snapshot_name)
        LOG.warning("replacing snapshot %s left by an earlier export", env.snapshot_name)
        store.volumes.detach(stale.id)
        store.images.delete(stale.id)
    snap = store.volumes.snapshot(vol.id, env.snapshot_name)
    LOG.info("snapshot %s of %s taken (%s)", snap.name, env.vol_name, format_size(snap.size))


def verify(environ: Mapping[str, str]) -> None:
    env = ext_env.parse(environ)
    env.check_params()
    store = open_store()
    if env.origin is not None:
        store.volumes.get(env.origin, "origin")
    LOG.info("store %s is usable", store.config.store.path)


def open_(environ: Mapping[str, str]) -> None:
    """Ready for I/O; on a shared store (rbd) this takes the volume's write lock, shared during a live
    migration (VOL_OPEN_EXCLUSIVE=False)."""
    env = ext_env.parse(environ)
    store = open_store()
    res = find_or_none(store, env.vol_name)
    exclusive = env.open_exclusive is not False
    if res is not None:
        store.datapath.open(res.id, exclusive=exclusive)
    LOG.info("open %s (%s)", env.vol_name, "exclusive" if exclusive else "shared for a migration")


def close(environ: Mapping[str, str]) -> None:
    """This node stops I/O; on a shared store (rbd) its write lock goes, the device stays."""
    env = ext_env.parse(environ)
    store = open_store()
    res = find_or_none(store, env.vol_name)
    if res is not None:
        store.datapath.close(res.id)
    LOG.info("close %s", env.vol_name)


ACTIONS = {
    "create": create,
    "attach": attach,
    "detach": detach,
    "remove": remove,
    "grow": grow,
    "setinfo": setinfo,
    "verify": verify,
    "snapshot": snapshot,
    "open": open_,
    "close": close,
}


def main(argv: list[str] | None = None) -> int:
    return run("atoll", ACTIONS, sys.argv[1:] if argv is None else argv, USAGE)


if __name__ == "__main__":
    sys.exit(main())
