"""Atoll configuration: one YAML file parsed into dataclasses at start-up.

Lookup order: ``--config FILE``, then ``$ATOLL_CONFIG``, then ``/etc/atoll/atoll.yaml``; with no file at all
the embedded default (a local store under ``/var/lib/atoll`` — or ``~/.local/share/atoll`` for a non-root
user — with a SQLite catalog inside it) works out of the box.

Example::

    store:
      backend: local          # Possible values: local (reflink where the directory supports it, else
                              # qcow2), qcow2, reflink, rbd.   Related options: store.path
      path: /srv/atoll
      max_chain_depth: 8      # qcow2 only: merge private layers past this depth
      # rbd only: several nodes share one Ceph pool (and a PostgreSQL catalog)
      pool: atoll             # Related options: ceph_conf (/etc/ceph/ceph.conf), user (cephx id: admin)
      namespace: ""           # an RBD namespace in the pool (Ganeti 3.1 userspace URIs accept none)
      deferred_removal: trash # a snapshot clones still use: trash (collected once they are gone) or
                              # flatten (copy its data into the clones now)
    catalog:
      url: sqlite:////srv/atoll/catalog.sqlite   # or postgresql://user@host/atoll
    auth:
      admins: [root]          # users who may set protected properties and see every image
      admin_group: ""         # an OS group whose members are admins too (uid 0 always is); only
                              # admins may act as another user through $ATOLL_USER
    images:
      protected_properties: ["ATOLL_*"]
      property_protections:   # Glance's role-based rules (first matching pattern wins)
        "x_billing_*": {create: [admin], read: [admin, member], update: [admin], delete: [admin]}
    api:                      # atoll serve (the HTTP services)
      bind: 127.0.0.1:9292    # host:port, or unix:/path
      workers: 2              # gunicorn worker processes      Related options: threads
      threads: 16             # threads per worker (gthread): concurrent requests per process
      public_url: ""          # the base URL clients reach (catalog endpoints); "" = http://<bind>
      region: RegionOne
      token_ttl: 3600         # seconds a Keystone token lives
      max_request_body: 1048576     # bytes of a JSON request body (uploads are not limited by this)
      max_image_size: 1099511627776  # bytes of one image upload (413 beyond)
      timeout: 600            # seconds a worker may spend on one request before it is restarted
    libvirt:
      cache: none             # <driver cache=…> of the disks Atoll gives libvirt; io, discard likewise
      uri: qemu:///system     # the libvirtd `atoll volume attach --domain` talks to
      detach_timeout: 30      # seconds a guest gets to release a disk being unplugged (--timeout)
    imports:                  # atoll image import / Glance interoperable import
      max_virtual_size: 4T    # refuse images whose guest disk is larger
      max_download_size: 64G  # web-download: bytes fetched at most
      allow_networks: []      # web-download: CIDRs allowed although loopback/private (e.g. 127.0.0.1/32)
      workers: 2              # concurrent imports in atoll serve
      convert_timeout: 3600   # seconds qemu-img convert may run;  convert_memory: its address space
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provider.errors import AtollError, BadConfiguration
from provider.utils.sizes import parse_size

DEFAULT_CONFIG_PATH = Path("/etc/atoll/atoll.yaml")
BACKENDS = ("local", "qcow2", "reflink", "rbd")
DEFERRED_REMOVAL = ("trash", "flatten")


def default_store_path() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/atoll")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "atoll"


@dataclass(frozen=True)
class StoreConfig:
    backend: str = "local"
    path: Path = field(default_factory=default_store_path)
    max_chain_depth: int = 8
    # rbd only
    pool: str = "atoll"
    ceph_conf: str = "/etc/ceph/ceph.conf"
    user: str = "admin"
    namespace: str = ""  # an RBD namespace inside the pool: several stores can share one pool
    deferred_removal: str = "trash"  # a snapshot clones still use: trash (collect later) or flatten


@dataclass(frozen=True)
class CatalogConfig:
    url: str = ""  # empty: sqlite file inside the store directory
    busy_timeout: float = 60.0


@dataclass(frozen=True)
class AuthConfig:
    admins: tuple[str, ...] = ("root",)
    admin_group: str = ""  # members of this OS group are admins too (uid 0 always is)


PROPERTY_OPERATIONS = ("create", "read", "update", "delete")


@dataclass(frozen=True)
class ImagesConfig:
    protected_properties: tuple[str, ...] = ("ATOLL_*",)
    # Glance-style role-based rules: {pattern: {create|read|update|delete: [roles]}}; "@" = every role,
    # "!" = nobody. ``protected_properties`` patterns mean admin-only create/update/delete, read by all.
    property_protections: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...] = ()

    def is_protected(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key.upper(), pat.upper()) for pat in self.protected_properties)

    def allowed_roles(self, key: str, operation: str) -> tuple[str, ...] | None:
        """The roles that may do ``operation`` on property ``key`` (None: anyone); first match wins."""
        return _allowed_roles(self, key, operation)


@functools.lru_cache(maxsize=4096)
def _allowed_roles(images: ImagesConfig, key: str, operation: str) -> tuple[str, ...] | None:
    """Memoized per (rules, key, operation): a listing of 1,000 images asks for every property of each
    one, and the pattern matching cost more than the rest of the image's view."""
    for pattern, ops in images.property_protections:
        if fnmatch.fnmatchcase(key.upper(), pattern.upper()):
            return dict(ops).get(operation, ("!",))
    if images.is_protected(key):
        return None if operation == "read" else ("admin",)
    return None


def _protections(value: Any) -> tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...]:
    if not isinstance(value, dict):
        raise ValueError("must map property patterns to {create, read, update, delete: [roles]}")
    rules = []
    for pattern, ops in value.items():
        if not isinstance(ops, dict) or set(ops) - set(PROPERTY_OPERATIONS):
            raise ValueError(f"{pattern}: use the operations {', '.join(PROPERTY_OPERATIONS)}")
        rules.append(
            (
                str(pattern),
                tuple((op, tuple(str(r) for r in ops.get(op) or ("!",))) for op in PROPERTY_OPERATIONS),
            )
        )
    return tuple(rules)


@dataclass(frozen=True)
class ImportsConfig:
    """Limits of image imports: the format inspector, ``qemu-img`` and web-download."""

    max_virtual_size: int = 4 << 40
    max_download_size: int = 64 << 30
    allow_networks: tuple[str, ...] = ()  # CIDRs web-download may reach although loopback/private
    allow_schemes: tuple[str, ...] = ("http", "https")
    download_timeout: float = 60.0  # seconds without progress before a download is given up
    max_redirects: int = 5
    workers: int = 2
    max_attempts: int = 3  # a job interrupted by a restart is resumed at most this often
    convert_timeout: float = 3600.0
    convert_memory: int = 2 << 30  # address-space limit of qemu-img (prlimit --as)
    info_timeout: float = 30.0

    def __post_init__(self) -> None:
        for cidr in self.allow_networks:
            ipaddress.ip_network(cidr, strict=False)
        if self.workers < 1 or self.max_attempts < 1 or self.max_redirects < 0:
            raise ValueError("workers and max_attempts must be at least 1, max_redirects at least 0")


@dataclass(frozen=True)
class LibvirtConfig:
    cache: str = "none"
    io: str = "native"
    discard: str = "unmap"
    uri: str = "qemu:///system"  # the libvirtd that `atoll volume attach --domain` talks to
    detach_timeout: float = 30.0  # seconds a guest gets to release a disk being unplugged


@dataclass(frozen=True)
class ApiConfig:
    bind: str = "127.0.0.1:9292"
    workers: int = 2
    threads: int = 16
    public_url: str = ""
    region: str = "RegionOne"
    token_ttl: int = 3600
    max_request_body: int = 1 << 20
    max_image_size: int = 1 << 40
    timeout: int = 600

    @property
    def base_url(self) -> str:
        """Where clients reach the server: ``public_url``, else derived from ``bind``."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.bind}"


@dataclass(frozen=True)
class Config:
    store: StoreConfig = field(default_factory=StoreConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    imports: ImportsConfig = field(default_factory=ImportsConfig)
    libvirt: LibvirtConfig = field(default_factory=LibvirtConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    source: Path | None = None

    @property
    def catalog_url(self) -> str:
        return self.catalog.url or f"sqlite:///{self.store.path / 'catalog.sqlite'}"

    @property
    def run_dir(self) -> Path:
        """Where attachment state (pid files, sockets) lives; under the store so it survives the CLI."""
        return self.store.path / "run"


def _section(raw: dict[str, Any], name: str, cls: Any, conversions: dict[str, Any]) -> Any:
    data = raw.get(name) or {}
    if not isinstance(data, dict):
        raise BadConfiguration(reason=f"section {name!r} must be a mapping")
    known = set(cls.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise BadConfiguration(reason=f"unknown key(s) in {name}: {', '.join(sorted(unknown))}")
    kwargs = {}
    for key, value in data.items():
        convert = conversions.get(key)
        try:
            kwargs[key] = convert(value) if convert else value
        except (TypeError, ValueError, AtollError) as e:
            raise BadConfiguration(reason=f"{name}.{key}: {e}") from e
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise BadConfiguration(reason=f"{name}: {e}") from e


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in value)


def _imports(raw: dict[str, Any]) -> ImportsConfig:
    sizes = {k: parse_size for k in ("max_virtual_size", "max_download_size", "convert_memory")}
    floats = {k: float for k in ("download_timeout", "convert_timeout", "info_timeout")}
    ints = {k: int for k in ("workers", "max_attempts", "max_redirects")}
    lists = {"allow_networks": _strings, "allow_schemes": _strings}
    return _section(raw, "imports", ImportsConfig, {**sizes, **floats, **ints, **lists})


def parse(raw: dict[str, Any] | None, source: Path | None = None) -> Config:
    raw = raw or {}
    if not isinstance(raw, dict):
        raise BadConfiguration(reason="the configuration must be a YAML mapping")
    unknown = set(raw) - {"store", "catalog", "auth", "images", "imports", "libvirt", "api"}
    if unknown:
        raise BadConfiguration(reason=f"unknown section(s): {', '.join(sorted(unknown))}")
    store = _section(
        raw, "store", StoreConfig, {"path": lambda v: Path(v).expanduser(), "max_chain_depth": int}
    )
    if store.backend not in BACKENDS:
        raise BadConfiguration(reason=f"store.backend {store.backend!r} is not one of {', '.join(BACKENDS)}")
    if store.deferred_removal not in DEFERRED_REMOVAL:
        choices = ", ".join(DEFERRED_REMOVAL)
        raise BadConfiguration(
            reason=f"store.deferred_removal {store.deferred_removal!r} is not one of {choices}"
        )
    if store.max_chain_depth < 2:
        raise BadConfiguration(reason="store.max_chain_depth must be at least 2")
    return Config(
        store=store,
        catalog=_section(raw, "catalog", CatalogConfig, {"url": str, "busy_timeout": float}),
        auth=_section(
            raw, "auth", AuthConfig, {"admins": lambda v: tuple(str(x) for x in v), "admin_group": str}
        ),
        images=_section(
            raw,
            "images",
            ImagesConfig,
            {
                "protected_properties": lambda v: tuple(str(x) for x in v),
                "property_protections": _protections,
            },
        ),
        imports=_imports(raw),
        libvirt=_libvirt(raw),
        api=_api_section(raw),
        source=source,
    )


def _libvirt(raw: dict[str, Any]) -> LibvirtConfig:
    cfg: LibvirtConfig = _section(raw, "libvirt", LibvirtConfig, {"uri": str, "detach_timeout": float})
    if cfg.detach_timeout <= 0:
        raise BadConfiguration(reason="libvirt.detach_timeout must be a positive number of seconds")
    return cfg


def _api_section(raw: dict[str, Any]) -> ApiConfig:
    ints = ("workers", "threads", "token_ttl", "max_request_body", "max_image_size", "timeout")
    api: ApiConfig = _section(raw, "api", ApiConfig, {**dict.fromkeys(ints, int), "bind": str})
    for key in ints:
        if getattr(api, key) < 1:
            raise BadConfiguration(reason=f"api.{key} must be at least 1")
    if not api.bind.startswith("unix:") and ":" not in api.bind:
        raise BadConfiguration(reason=f"api.bind {api.bind!r} must be HOST:PORT or unix:PATH")
    return api


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the configuration from ``path``, ``$ATOLL_CONFIG`` or the default file; else the defaults."""
    explicit = path or os.environ.get("ATOLL_CONFIG")
    candidate = Path(explicit) if explicit else DEFAULT_CONFIG_PATH
    if not candidate.exists():
        if explicit:
            raise BadConfiguration(reason=f"configuration file {candidate} does not exist")
        return parse({})
    try:
        raw = yaml.safe_load(candidate.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise BadConfiguration(reason=f"cannot read {candidate}: {e}") from e
    return parse(raw, source=candidate)
