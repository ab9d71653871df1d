"""Reading an image's data for a download: the raw file itself where the backend has one, else a pipe
that a thread exports into (qcow2 chains flattened, RBD), read with large buffers."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from provider.backends import Backend
from provider.errors import CapabilityNotSupported, PermissionDenied

if TYPE_CHECKING:
    from provider.services.store import Store

LOG = logging.getLogger(__name__)
BUFFER = 1 << 20


@dataclass
class ImageData:
    stream: IO[bytes] | None  # None: the image has no data yet (queued)
    size: int
    checksum: str | None


def export(backend: Backend, locator: str, disk_format: str) -> IO[bytes]:
    if disk_format == "raw":
        try:
            return open(backend.path(locator), "rb", buffering=BUFFER)
        except CapabilityNotSupported:
            pass
    rfd, wfd = os.pipe()

    def run() -> None:
        with open(wfd, "wb", buffering=BUFFER) as out:
            try:
                backend.export_stream(locator, disk_format, out)
            except BrokenPipeError:  # the client went away
                return
            except Exception:
                LOG.exception("export of %s failed; the download is cut short", locator)

    threading.Thread(target=run, name="export", daemon=True).start()
    return open(rfd, "rb", buffering=BUFFER)


def open_image_data(store: Store, image_id: str) -> ImageData:
    """The data of an image the caller may read; a deactivated image's only for admins."""
    rec = store.glance.show(image_id)
    if rec.queued:
        return ImageData(None, 0, None)
    if rec.status == "deactivated" and not store.caller.admin:
        raise PermissionDenied(reason=f"image {image_id} is deactivated: its data cannot be downloaded")
    res = store.images.get(image_id)
    stream = export(store.backend(res.backend), res.locator, res.disk_format)
    return ImageData(stream, res.size, rec.glance.get("checksum"))
