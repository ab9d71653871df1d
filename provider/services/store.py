"""The Store facade: configuration, catalog, backends and the services on top of them."""

from __future__ import annotations

import logging
from functools import cached_property

from atoll_common import process
from provider.backends import Backend, load_backend, pick_local
from provider.catalog import SCHEMA_VERSION, Catalog
from provider.config import Config
from provider.errors import BadConfiguration
from provider.services.base import Caller
from provider.services.containers import ContainerService
from provider.services.customize import CustomizeService
from provider.services.datapath import DataPath
from provider.services.domains import DomainService
from provider.services.fsck import FsckService
from provider.services.glance import GlanceService
from provider.services.hashmaps import HashmapService
from provider.services.hosts import HostService
from provider.services.identity import IdentityService
from provider.services.image_adopt import ImageAdoption
from provider.services.image_members import MembersService
from provider.services.images import ImageService
from provider.services.imports import ImportService
from provider.services.imports_glance import GlanceImportService
from provider.services.objects import ObjectService
from provider.services.os_caller import os_caller
from provider.services.quotas import QuotaService
from provider.services.resources import ResourceService
from provider.services.scrub import ScrubService
from provider.services.volume_api import VolumeApiService
from provider.services.volume_api_attachments import VolumeAttachmentService
from provider.services.volume_api_messages import VolumeMessageService
from provider.services.volume_api_snapshots import VolumeSnapshotService
from provider.services.volumes import VolumeService

LOG = logging.getLogger(__name__)


def default_caller(config: Config) -> Caller:
    """The local CLI acts for its OS user (``$ATOLL_USER`` names another one, for admins only)."""
    return os_caller(config.auth)


class Store:
    def __init__(
        self, config: Config, caller: Caller | None = None, run: process.Runner = process.run
    ) -> None:
        self.config = config
        self.caller = caller or default_caller(config)
        self.run = run
        self.catalog = Catalog(config.catalog_url, config.catalog.busy_timeout)
        self._backends: dict[str, Backend] = {}
        self._default_backend: str | None = None

    @classmethod
    def open(cls, config: Config, caller: Caller | None = None, run: process.Runner = process.run) -> Store:
        """Open the store, creating or migrating it on first use (the embedded default needs no init)."""
        caller = caller or default_caller(config)  # refuse a forged $ATOLL_USER before touching anything
        try:
            config.store.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BadConfiguration(reason=f"cannot create store directory {config.store.path}: {e}") from e
        store = cls(config, caller, run)
        if store.catalog.version() < SCHEMA_VERSION or store.catalog.get_meta("backend") is None:
            store.init()
        return store

    def init(self) -> str:
        """Create the store directory and catalog (idempotent); return the backend new data goes to."""
        self.config.store.path.mkdir(parents=True, exist_ok=True)
        self.catalog.migrate()
        name = self.catalog.get_meta("backend")
        if name is None:
            name = self.config.store.backend
            if name == "local":
                name = pick_local(self.config.store)
            self.backend(name).check()
            with self.catalog.write() as conn:
                self.catalog.set_meta(conn, "backend", name)
            LOG.info("store at %s uses the %s backend", self.config.store.path, name)
        return name

    def backend(self, name: str | None = None) -> Backend:
        if name is None:
            if self._default_backend is None:
                self._default_backend = self.catalog.get_meta("backend") or self.init()
            name = self._default_backend
        if name not in self._backends:
            self._backends[name] = load_backend(name, self.config.store, run=self.run)
        return self._backends[name]

    def for_caller(self, caller: Caller) -> Store:
        """The same store (catalog engine, backends) acting for ``caller``: cheap, one per request."""
        other = Store.__new__(Store)
        shared = ("config", "run", "catalog", "_backends", "_default_backend")
        other.__dict__.update({k: self.__dict__[k] for k in shared})
        other.caller = caller
        return other

    @cached_property
    def glance(self) -> GlanceService:
        return GlanceService(self)

    @cached_property
    def image_members(self) -> MembersService:
        return MembersService(self)

    @cached_property
    def identity(self) -> IdentityService:
        return IdentityService(self)

    @cached_property
    def objects(self) -> ObjectService:
        return ObjectService(self)

    @cached_property
    def containers(self) -> ContainerService:
        return ContainerService(self)

    @cached_property
    def hashmaps(self) -> HashmapService:
        return HashmapService(self)

    @cached_property
    def images(self) -> ImageService:
        return ImageService(self)

    @cached_property
    def imports(self) -> ImportService:
        return ImportService(self)

    @cached_property
    def glance_imports(self) -> GlanceImportService:
        return GlanceImportService(self)

    @cached_property
    def volumes(self) -> VolumeService:
        return VolumeService(self)

    @cached_property
    def datapath(self) -> DataPath:
        return DataPath(self)

    @cached_property
    def resources(self) -> ResourceService:
        return ResourceService(self)

    @cached_property
    def fsck(self) -> FsckService:
        return FsckService(self)

    @cached_property
    def customize(self) -> CustomizeService:
        return CustomizeService(self)

    @cached_property
    def hosts(self) -> HostService:
        return HostService(self)

    @cached_property
    def scrub(self) -> ScrubService:
        return ScrubService(self)

    @cached_property
    def domains(self) -> DomainService:
        """libvirt domains: plug volumes into guests (libvirt-python, imported on first use)."""
        return DomainService(self)

    @cached_property
    def image_adoption(self) -> ImageAdoption:
        return ImageAdoption(self)

    @cached_property
    def quotas(self) -> QuotaService:
        return QuotaService(self)

    @cached_property
    def volume_api(self) -> VolumeApiService:
        """The Volume API's view of volumes (Cinder semantics: ids, projects, quotas)."""
        return VolumeApiService(self)

    @cached_property
    def volume_snapshots(self) -> VolumeSnapshotService:
        return VolumeSnapshotService(self)

    @cached_property
    def volume_attachments(self) -> VolumeAttachmentService:
        return VolumeAttachmentService(self)

    @cached_property
    def volume_messages(self) -> VolumeMessageService:
        return VolumeMessageService(self)
