"""The Ganeti OS definition, run as ``python -m provider.ganeti.osdef <action>`` by the shims in
``customization/ganeti_os/``: ``create`` customizes the instance's disk; ``export``/``import`` stream it
for ``gnt-backup``; ``rename`` and ``verify``.

``create`` on an Atoll clone only customizes (the clone already holds the image). On
``gnt-instance reinstall`` of a clone it first makes the volume a fresh clone of its origin again
(reflink and qcow2; no data copied); on any other disk, or an rbd volume, it first copies the image
onto the disk as snf-image does.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import BinaryIO

from customization.errors import ParameterError
from provider.errors import UsageError
from provider.ganeti import osglue, osparams
from provider.ganeti.script import open_store, run
from provider.services import Resource, Store
from provider.utils.sizes import format_size

LOG = logging.getLogger(__name__)
CHUNK = 4 << 20
ZEROS = bytes(CHUNK)

USAGE = """\
usage: <os dir>/<action>   (run by Ganeti; verify is run as "verify parameters")

Atoll OS definition (API 20). Actions: create export import rename verify.
OS parameters (-O, or --os-parameters-private/-secret for passwords): img_id img_format img_passwd
img_passwd_hash img_properties inst_properties img_personality auth_keys hostname.
Configuration: $ATOLL_CONFIG, else /etc/atoll/atoll.yaml."""


def _check_api(environ: Mapping[str, str]) -> None:
    version = environ.get("OS_API_VERSION", str(osparams.API_VERSION))
    if version != str(osparams.API_VERSION):
        raise UsageError("OS API version %(v)s is not supported (only 20)", v=version)


def _install_source(
    store: Store, vol: Resource | None, request: osparams.OsRequest, reinstall: bool
) -> Resource | None:
    """What to copy onto the disk first: nothing for a fresh clone, the image otherwise."""
    if vol is None:
        if request.img_id is None:
            raise ParameterError(
                "disk 0 is not an Atoll volume: give -O img_id=IMAGE to copy an image onto it"
            )
        return osglue.source(store, request.img_id)
    if request.img_id is not None and not osglue.is_origin(store, vol, request.img_id):
        return osglue.source(store, request.img_id)
    if reinstall:
        return osglue.origin_of(store, vol)
    return None


def create(environ: Mapping[str, str]) -> None:
    _check_api(environ)
    name = environ.get("INSTANCE_NAME", "")
    if not name:
        raise UsageError("INSTANCE_NAME is not set: this script is meant to be run by Ganeti (see -h)")
    if int(environ.get("DISK_COUNT", "0") or 0) < 1:
        raise UsageError("instance %(name)s has no disk to install on", name=name)
    request = osparams.parse(environ, hostname=name)
    reinstall = environ.get("INSTANCE_REINSTALL") == "1"
    store = open_store()
    vol = osglue.disk_volume(store, environ.get("DISK_0_UUID"))
    copy = _install_source(store, vol, request, reinstall)
    path = environ.get("DISK_0_PATH")
    if vol is not None and path:
        osglue.check_handed(store, vol, path)
    if copy is not None and vol is not None and copy.id == vol.parent and osglue.reclone(store, vol, copy):
        copy = None  # reinstall from the origin: a fresh clone again, nothing to copy
        vol = store.volumes.get(vol.id)  # with a new top or image, maybe at another device (rbd)
        path = osglue.served_path(store, vol, path)
    with osglue.raw_path(store, vol, path) as disk:
        if copy is not None:
            osglue.copy_image(store, copy, disk)
            properties = osglue.properties_of(store, copy)
        else:
            assert vol is not None
            properties = osglue.properties_of(store, vol)
        properties = {**properties, **request.img_properties}
        what = f"volume {vol.name}" if vol is not None else str(disk)
        LOG.info("customizing %s of instance %s%s", what, name, " (reinstall)" if reinstall else "")
        report = store.customize.disk(disk, properties, request.params)  # the engine logs each outcome
    for warning in report.warnings:
        LOG.warning("%s", warning)
    LOG.info("instance %s installed in %.1f s", name, report.seconds)


def _pump(src: BinaryIO, dst: BinaryIO, limit: int | None = None, *, keep_zeros: bool = False) -> int:
    """Copy ``src`` onto ``dst``. With ``keep_zeros`` (``dst`` is a disk opened for update) a chunk of
    zeros is not written where the disk already reads zeros: importing a mostly empty dump onto a fresh
    volume allocates only the data, not the whole disk."""
    total = 0
    while chunk := src.read(CHUNK):
        total += len(chunk)
        if limit is not None and total > limit:
            raise UsageError("the import stream is larger than the disk (%(size)s)", size=format_size(limit))
        if keep_zeros and chunk == ZEROS:
            here = dst.tell()
            if dst.read(CHUNK) == ZEROS:
                continue
            dst.seek(here)
        dst.write(chunk)
    dst.flush()
    return total


def _disk(environ: Mapping[str, str], *keys: str) -> str:
    for key in keys:
        if environ.get(key):
            return environ[key]
    raise UsageError(
        "%(key)s is not set (a userspace-only disk cannot be streamed by this OS definition)", key=keys[0]
    )


def export(environ: Mapping[str, str]) -> None:
    _check_api(environ)
    path = _disk(environ, "EXPORT_DISK_PATH", "EXPORT_DEVICE")
    size = osglue.device_size(path)
    size_fd = environ.get("EXP_SIZE_FD")
    if size_fd:
        os.write(int(size_fd), f"{size}\n".encode())
    with open(path, "rb") as src:
        sent = _pump(src, sys.stdout.buffer)
    LOG.info("exported %s (%s)", path, format_size(sent))


def import_(environ: Mapping[str, str]) -> None:
    _check_api(environ)
    path = _disk(environ, "IMPORT_DISK_PATH", "IMPORT_DEVICE")
    limit = osglue.device_size(path)
    with open(path, "r+b") as dst:
        got = _pump(sys.stdin.buffer, dst, limit, keep_zeros=True)
        os.fsync(dst.fileno())
    LOG.info("imported %s onto %s", format_size(got), path)


def rename(environ: Mapping[str, str]) -> None:
    _check_api(environ)
    LOG.info(
        "instance %s is now %s; the guest's own host name is left as it is",
        environ.get("OLD_INSTANCE_NAME", "?"),
        environ.get("INSTANCE_NAME", "?"),
    )


def verify(environ: Mapping[str, str]) -> None:
    _check_api(environ)
    request = osparams.parse(environ, hostname=None)
    if request.img_id is not None:
        osglue.source(open_store(), request.img_id)
    LOG.info("OS parameters are valid")


ACTIONS = {"create": create, "export": export, "import": import_, "rename": rename, "verify": verify}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:2] == ["verify", "parameters"]:  # Ganeti's only verify mode
        args = ["verify"]
    return run("atoll-os", ACTIONS, args, USAGE)


if __name__ == "__main__":
    sys.exit(main())
