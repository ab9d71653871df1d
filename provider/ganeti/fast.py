"""Fast paths of the ExtStorage verbs Ganeti runs over and over and that change nothing on the host.

``attach`` of a volume that is attached and healthy, ``verify``, ``setinfo``, and ``open``/``close`` of
a single-host volume (qcow2, reflink: nothing to lock) answer from the catalog through the bare DB
driver (provider.catalog.lite), without SQLAlchemy, the backends or the services, and without the
catalog migration check ``Store.open`` makes. Each returns None (or False) whenever it is not sure —
unknown name, attachment missing, unhealthy or in another mode, rbd, catalog not there or busy — and
the verb then takes the full path through the services, which gives the authoritative answer or error.

Ganeti calls every ExtStorage script as root for its trusted service, so there is no owner check to
make here (``provider.ganeti.script.open_store`` opens the store as an admin caller too).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from provider import config as config_mod
from provider.catalog import lite
from provider.ganeti.env import ExtEnv, instance_of
from provider.utils.host import HOST

LOG = logging.getLogger(__name__)


_VOLUME = (
    "SELECT r.id, r.backend, r.disk_format, r.mode"
    " FROM volume_views v JOIN resources r ON r.id = v.resource_id"
    " WHERE v.name = ? AND r.state = 'available'"
)
_ATTACHMENT = (
    "SELECT mode, access, kind, device, uri, state FROM attachments WHERE resource_id = ? AND host = ?"
)
_ORIGIN = (
    "SELECT id FROM resources WHERE state = 'available' AND (id = ?"
    " OR id IN (SELECT resource_id FROM image_views WHERE name = ?)"
    " OR id IN (SELECT resource_id FROM volume_views WHERE name = ?)"
    " OR id IN (SELECT resource_id FROM object_views WHERE container = ? AND name = ?))"
)
SINGLE_HOST = ("qcow2", "reflink")


def _transaction(config: config_mod.Config, write: bool = False) -> Any:
    return lite.transaction(config.catalog_url, config.catalog.busy_timeout, write=write)


def attached(env: ExtEnv) -> tuple[str | None, str | None] | None:
    """``(device, uri)`` of the volume's healthy attachment on this host in the access Ganeti asks for."""
    config = config_mod.load()
    try:
        with _transaction(config) as db:
            vol = db and db.one(_VOLUME, (env.vol_name,))
            att = vol and db.one(_ATTACHMENT, (vol[0], HOST))
    except lite.Unavailable as e:
        LOG.debug("fast path: %s", e)
        return None
    if not vol or not att:
        return None
    rid, backend, disk_format, _mode = vol
    mode, access, _kind, device, uri, state = att
    if mode != "rw" or access != ("userspace" if env.userspace else "kernelspace"):
        return None  # the full path says why (attached another way)
    if not _healthy(config, rid, backend, disk_format, device, json.loads(state).get("path")):
        return None  # the full path brings it up again
    return device, uri


def _healthy(
    config: config_mod.Config, rid: str, backend: str, disk_format: str, device: str | None, path: str | None
) -> bool:
    from provider.datapath import health

    if backend == "qcow2" and disk_format == "qcow2":
        return health.qsd_ok(config.run_dir, rid, device)
    if backend in SINGLE_HOST:
        return health.file_ok(device, path)
    return False  # rbd: the full path checks its mapping or FUSE mount


def verify(env: ExtEnv) -> bool:
    """The store and its catalog are there, and so is the origin, when one is given."""
    config = config_mod.load()
    if not config.store.path.is_dir():
        return False
    origin = env.origin
    try:
        with _transaction(config) as db:
            if db is None:
                return False
            if origin is None:
                found = 1
            else:
                container, _, name = origin.partition("/")
                found = len(db.all(_ORIGIN, (origin, origin, origin, container, name)))
    except lite.Unavailable as e:
        LOG.debug("fast path: %s", e)
        return False
    if found != 1:
        return False  # not there, or ambiguous: the full path names the problem
    LOG.info("store %s is usable", config.store.path)
    return True


def setinfo(env: ExtEnv) -> bool:
    """Record Ganeti's VOL_METADATA (and the instance name in it) on the volume."""
    config = config_mod.load()
    values = {"VOL_METADATA": env.metadata or "", "instance": instance_of(env.metadata)}
    try:
        with _transaction(config, write=True) as db:
            vol = db and db.one(_VOLUME, (env.vol_name,))
            if not db or not vol:
                return False
            row = db.one("SELECT ganeti FROM volume_views WHERE resource_id = ?", (vol[0],))
            merged = {**json.loads(row[0]), **values} if row else values
            db.execute(
                "UPDATE volume_views SET ganeti = ? WHERE resource_id = ?", (json.dumps(merged), vol[0])
            )
    except lite.Unavailable as e:
        LOG.debug("fast path: %s", e)
        return False
    LOG.info("volume %s: metadata %s", env.vol_name, env.metadata or "(empty)")
    return True


def single_host(env: ExtEnv) -> bool:
    """The volume lives on a single-host backend, where ``open`` and ``close`` have nothing to do."""
    config = config_mod.load()
    try:
        with _transaction(config) as db:
            vol = db and db.one(_VOLUME, (env.vol_name,))
    except lite.Unavailable as e:
        LOG.debug("fast path: %s", e)
        return False
    return bool(vol) and vol[1] in SINGLE_HOST
