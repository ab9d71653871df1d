"""The one gateway to the customization engine: on a volume (with the image properties of its lineage)
or on any local disk Ganeti hands over (``DISK_0_PATH``). Nothing else in Atoll runs the engine."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from sqlalchemy import update

from customization.errors import CustomizationError
from customization.params import InstanceParams
from customization.report import Report, Status, TaskOutcome
from provider.catalog import schema as t
from provider.errors import AtollError, InvalidInput
from provider.services.base import Service, res_key
from provider.services.local_disk import local_disk
from provider.utils.faults import failpoint
from provider.utils.host import HOST, my_start

LOG = logging.getLogger(__name__)

Progress = Callable[[TaskOutcome], None]
# resources.op of a new volume while its first customization runs: fsck removes it if the process died
CUSTOMIZE_OP = "customize"
NEARLY_FULL = 16 << 20  # free bytes under which a failed customization is put down to a full store


class CustomizationFailed(AtollError):
    message = "customization of %(name)s failed: %(reason)s"


class CustomizeService(Service):
    def properties(self, ref: str) -> dict[str, str]:
        """The image properties that apply to ``ref``: its own, else those of its nearest image ancestor."""
        with self.catalog.read() as conn:
            res = self.resolve(conn, ref)
            self.check_read(conn, res)
            return self.store.images.inherited_properties(conn, res)

    def run(
        self, ref: str, params: InstanceParams, on_progress: Progress | None = None, data_disks: bool = False
    ) -> Report:
        """Apply the image's tasks to volume ``ref`` in place (nothing runs for a Snapshot's clone; with
        ``data_disks`` nothing for a disk that is no Linux system, when the image names no OSFAMILY)."""
        vol = self.get(ref, "volume")
        if vol.mode != "rw":
            raise InvalidInput("%(ref)r is a %(kind)s: only volumes are customized", ref=ref, kind=vol.kind)
        self.check_owner(vol)
        # A guest (or anything else) may be using an attached volume: rewriting its filesystem under it
        # would corrupt it. Ganeti's OS create customizes the disk Ganeti hands it, not through here.
        self.store.datapath.refuse_if_attached(vol, "customize it")
        props = self.properties(vol.id)
        disk = ""
        # The engine is imported here, on first use: commands that only read or clone never load its
        # tasks and guest filesystem drivers (the verb server preloads it for Ganeti's calls).
        from customization.engine import customize

        try:
            with local_disk(self.store, vol.id, writable=True) as path:
                disk = str(path)
                progress = _with_failpoint(on_progress)
                return customize(path, props, params, on_progress=progress, data_disks=data_disks)
        except CustomizationError as e:
            # The reason reaches tenants (the Volume API's error_reason and messages): the host's device
            # or file path, which they cannot use and should not learn, is called "the volume".
            reason = str(e).replace(disk, "the volume") if disk else str(e)
            raise CustomizationFailed(name=vol.name, reason=reason + self._full_note(vol.backend)) from e

    def _full_note(self, backend: str) -> str:
        """Why a write in the guest failed, when the store's own filesystem is (nearly) full: the guest's
        tools only see an I/O error there (qcow2 through its daemon) or ENOSPC of a file they write."""
        if backend == "rbd":
            return ""
        path = self.store.config.store.path
        try:
            st = os.statvfs(path)
        except OSError:
            return ""
        return f" (the store at {path} is full)" if st.f_bavail * st.f_frsize < NEARLY_FULL else ""

    @contextmanager
    def first_run(self, rid: str) -> Iterator[None]:
        """Mark new volume ``rid`` as being customized for the duration of the block (its status is
        ``creating``, the catalog names this process): a crash leaves a volume that fsck removes, never a
        half-customized one that looks finished. The caller removes it if the block raises."""
        self._mark(rid, CUSTOMIZE_OP, json.dumps({"host": HOST, "proc_start": my_start()}), "creating")
        yield
        failpoint("customize.before-done")
        self._mark(rid, None, None, "available")

    def _mark(self, rid: str, op: str | None, data: str | None, status: str) -> None:
        with self.catalog.write(res_key(rid)) as conn:
            conn.execute(
                update(t.resources)
                .where(t.resources.c.id == rid, t.resources.c.state == "available")
                .values(op=op, op_pid=os.getpid() if op else None, op_host=HOST if op else None, op_data=data)
            )
            conn.execute(
                update(t.volume_views).where(t.volume_views.c.resource_id == rid).values(status=status)
            )

    def disk(
        self,
        path: str | os.PathLike[str],
        properties: Mapping[str, str],
        params: InstanceParams,
        on_progress: Progress | None = None,
    ) -> Report:
        """Apply ``properties``' tasks to the local disk ``path`` (a device or raw file the caller owns,
        e.g. Ganeti's instance disk); errors are the engine's own (AtollError subclasses)."""
        from customization.engine import customize

        return customize(path, properties, params, on_progress=on_progress)


def _with_failpoint(on_progress: Progress | None) -> Progress:
    """Report each task's outcome, then pass the failpoint between tasks (``customize.after-task`` stops
    after the first task that ran, ``customize.after-task:NAME`` after that task)."""

    def report(outcome: TaskOutcome) -> None:
        if on_progress is not None:
            on_progress(outcome)
        if outcome.status != Status.SKIPPED:
            failpoint("customize.after-task", outcome.name)

    return report
