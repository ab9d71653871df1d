"""The one gateway to the customization engine: on a volume (with the image properties of its lineage)
or on any local disk Ganeti hands over (``DISK_0_PATH``). Nothing else in Atoll runs the engine."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from customization.engine import customize
from customization.errors import CustomizationError
from customization.params import InstanceParams
from customization.report import Report, TaskOutcome
from provider.errors import AtollError, InvalidInput
from provider.services.base import Service
from provider.services.local_disk import local_disk

LOG = logging.getLogger(__name__)

Progress = Callable[[TaskOutcome], None]


class CustomizationFailed(AtollError):
    message = "customization of %(name)s failed: %(reason)s"


class CustomizeService(Service):
    def properties(self, ref: str) -> dict[str, str]:
        """The image properties that apply to ``ref``: its own, else those of its nearest image ancestor."""
        with self.catalog.read() as conn:
            res = self.resolve(conn, ref)
            self.check_read(conn, res)
            return self.store.images.inherited_properties(conn, res)

    def run(self, ref: str, params: InstanceParams, on_progress: Progress | None = None) -> Report:
        """Apply the image's tasks to volume ``ref`` in place (nothing runs for a Snapshot's clone)."""
        vol = self.get(ref, "volume")
        if vol.mode != "rw":
            raise InvalidInput("%(ref)r is a %(kind)s: only volumes are customized", ref=ref, kind=vol.kind)
        self.check_owner(vol)
        props = self.properties(vol.id)
        try:
            with local_disk(self.store, vol.id, writable=True) as path:
                return customize(path, props, params, on_progress=on_progress)
        except CustomizationError as e:
            raise CustomizationFailed(name=vol.name, reason=str(e)) from e

    def disk(
        self,
        path: str | os.PathLike[str],
        properties: Mapping[str, str],
        params: InstanceParams,
        on_progress: Progress | None = None,
    ) -> Report:
        """Apply ``properties``' tasks to the local disk ``path`` (a device or raw file the caller owns,
        e.g. Ganeti's instance disk); errors are the engine's own (AtollError subclasses)."""
        return customize(path, properties, params, on_progress=on_progress)
