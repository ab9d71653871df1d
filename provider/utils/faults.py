"""Failpoints: crash the process at a named step, so tests can prove a crash between steps loses nothing.

``ATOLL_FAILPOINT=clone.after-backend`` makes the process SIGKILL itself when it reaches that point —
exactly what a power cut or ``kill -9`` at the worst moment does. Unset, a failpoint costs one dict lookup.

Every name used in the code is registered in FAILPOINTS (a test checks both ways), and a test kills the
CLI at each of them on every file backend, then checks that fsck repairs the store.
"""

from __future__ import annotations

import os
import signal

FAILPOINTS: dict[str, str] = {
    "upload.after-backend": "object upload: the data is written, the object is still pending",
    "clone.after-backend": "volume create: the clone exists in the backend, the volume is still pending",
    "snapshot.after-pending": "volume snapshot: recorded as pending, the backend not touched yet",
    "snapshot.after-backend": "volume snapshot (offline or live): taken, not yet linked in the catalog",
    "chain.after-rebase": "qcow2 chain merge: the volume reads from the lower layer, catalog not rewired",
    "grow.after-backend": "volume grow (offline or live): the disk is larger, the catalog says the old size",
    "reclone.after-backend": "volume reimage (and Ganeti reinstall): the new top exists, served if the "
    "volume is attached, the catalog still names the old one",
    "collect.before-remove": "delete and collection: the catalog forgot the files, they are still on disk",
    "attach.after-daemon": "attach of a qcow2 volume: its qemu-storage-daemon is up, no device yet",
    "attach.after-lock": "attach of an rbd volume: its RBD lock is taken, nothing mapped yet",
    "attach.after-datapath": "attach: the device or daemon is up, not yet recorded",
    "detach.after-loop": "detach of a qcow2 volume: its loop device is gone, its daemon still runs",
    "detach.after-datapath": "detach: the device or daemon is gone, the record is still there",
    "customize.after-task": "volume create from an image: a customization task has finished, others not yet "
    "(``customize.after-task:TASK`` names the task)",
    "customize.before-done": "volume create from an image: customized, not yet marked available",
    "import.after-convert": "image import: converted to a raw scratch file, nothing stored yet",
    "import.after-store": "image import: the data is stored as an object, not yet registered as an image",
    "scrub.after-resource": "fsck --scrub: one resource re-hashed and checkpointed",
    "ganeti.attach.before-print": "ExtStorage attach: the data path is up, the device not yet printed",
}


def failpoint(name: str, detail: str | None = None) -> None:
    """Die here if ``ATOLL_FAILPOINT`` is ``name``, or ``name:detail`` for a point passed in a loop."""
    wanted = os.environ.get("ATOLL_FAILPOINT")
    if wanted is not None and (wanted == name or (detail is not None and wanted == f"{name}:{detail}")):
        os.kill(os.getpid(), signal.SIGKILL)
