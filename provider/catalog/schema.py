"""Table definitions (the current schema) and the ordered migrations that build it.

Migrations are plain DDL that SQLite and PostgreSQL both accept (or, where data must be converted, a
function of the connection); each one runs exactly once, recorded in ``atoll_meta.schema_version``.
Add a migration by appending to MIGRATIONS; never edit a released one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Integer, MetaData, Table, Text, delete, select

from provider.catalog import project_names
from provider.catalog.project_names import per_project_names

metadata = MetaData()

meta = Table("atoll_meta", metadata, Column("key", Text, primary_key=True), Column("value", Text))

# One row per underlying resource. mode: ro|rw. state: pending (an operation is creating it; op_* say
# which process and what to remove if it dies), available, deleted (hidden: views gone, kept on disk
# while something still requires it). Kind is derived from mode and views, never stored.
resources = Table(
    "resources",
    metadata,
    Column("id", Text, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mode", Text, nullable=False),
    Column("backend", Text, nullable=False),
    Column("locator", Text, nullable=False),
    Column("disk_format", Text, nullable=False),
    Column("parent", Text),
    Column("state", Text, nullable=False),
    Column("sha256", Text),
    Column("owner", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Column("op", Text),
    Column("op_pid", Integer),
    Column("op_host", Text),
    Column("op_data", Text),
)

# Physical dependencies: resource_id's backend object cannot exist without requires_id's.
deps = Table(
    "deps",
    metadata,
    Column("resource_id", Text, primary_key=True),
    Column("requires_id", Text, primary_key=True),
)

object_views = Table(
    "object_views",
    metadata,
    Column("resource_id", Text, primary_key=True),
    Column("container", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("meta", Text, nullable=False),
    Column("created_at", Text, nullable=False),
)

image_views = Table(
    "image_views",
    metadata,
    Column("resource_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("owner", Text, nullable=False),
    Column("visibility", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("disk_format", Text, nullable=False),
    Column("container_format", Text, nullable=False),
    Column("properties", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Column("glance", Text, nullable=False),
)

image_members = Table(
    "image_members",
    metadata,
    Column("resource_id", Text, primary_key=True),
    Column("member", Text, primary_key=True),
    Column("status", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
)

volume_views = Table(
    "volume_views",
    metadata,
    Column("resource_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("ganeti", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("description", Text),
    Column("meta", Text),
    Column("origin", Text),
)

# One row per resource attached on a host (the data path's record; the pieces themselves are found again
# on the host: loop devices by backing file, daemons by pid file). access: kernelspace|userspace; kind:
# block|file|nbd|rbd; state: what detach needs (paths of the daemon's directory and sockets), JSON.
attachments = Table(
    "attachments",
    metadata,
    Column("resource_id", Text, primary_key=True),
    Column("host", Text, primary_key=True),
    Column("mode", Text, nullable=False),
    Column("access", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("device", Text),
    Column("uri", Text),
    Column("state", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("pid", Integer),
    Column("proc_start", Text),
    Column("attachment_id", Text),
    Column("instance_uuid", Text),
    Column("attach_status", Text),
)

# Volume API: per-project limits (project "*" holds the defaults), and the volumes whose creation failed
# (no data is left; the row tells the client why, until it deletes the volume).
quotas = Table(
    "quotas",
    metadata,
    Column("project", Text, primary_key=True),
    Column("resource", Text, primary_key=True),
    Column("hard_limit", BigInteger, nullable=False),
)

volume_failures = Table(
    "volume_failures",
    metadata,
    Column("id", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", Text, nullable=False),
)

# Hosts that attached something, and hosts an admin declared dead (``atoll host forget``): their
# attachments and pending operations are stale, since nothing on them will ever run detach again.
hosts = Table(
    "hosts",
    metadata,
    Column("name", Text, primary_key=True),
    Column("state", Text, nullable=False),
    Column("seen_at", Text),
    Column("forgotten_at", Text),
)

# Ganeti identity of volumes (VOL_NAME, VOL_UUID, …) as indexed rows: Ganeti finds a volume by name on
# every verb, which must not parse every volume's JSON.
ganeti_ids = Table(
    "ganeti_ids",
    metadata,
    Column("resource_id", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

Step = str | Callable[[Connection], None]  # DDL, or a data step run on the migrating connection
# The block index (Pithos-style dedup and sync): sha256 of each 4 MiB block of a read-only raw backend
# object. Keyed by backend object, not resource, so thin copies (which share it) share the index too.
blocks = Table(
    "blocks",
    metadata,
    Column("backend", Text, primary_key=True),
    Column("locator", Text, primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    Column("hash", Text, nullable=False),
)

# The md5 a Swift client checks as ETag, per backend object (computed while the bytes stream in).
digests = Table(
    "digests",
    metadata,
    Column("backend", Text, primary_key=True),
    Column("locator", Text, primary_key=True),
    Column("md5", Text, nullable=False),
)

# Blocks uploaded by ``POST ?update`` wait as view-less read-only resources until a hashmap uses them.
block_stages = Table(
    "block_stages",
    metadata,
    Column("resource_id", Text, primary_key=True),
    Column("created_at", Text, nullable=False),
)

# Swift containers a project created explicitly (with metadata and a read ACL). Containers also exist
# implicitly while they hold objects (the CLI and snapshots create objects without a container row).
containers = Table(
    "containers",
    metadata,
    Column("project", Text, primary_key=True),
    Column("name", Text, primary_key=True),
    Column("meta", Text, nullable=False),
    Column("read_acl", Text, nullable=False),
    Column("created_at", Text, nullable=False),
)

# Identity (Keystone v3 subset). A project owns resources (``resources.owner`` and ``image_views.owner``
# hold project ids); the local CLI's OS user is the project of the same name (id = name). Passwords are
# argon2 hashes; tokens are stored as their sha256, never in clear.
projects = Table(
    "projects",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("domain_id", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("enabled", Integer, nullable=False),
    Column("created_at", Text, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("domain_id", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("default_project_id", Text),
    Column("enabled", Integer, nullable=False),
    Column("created_at", Text, nullable=False),
)

role_assignments = Table(
    "role_assignments",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("project_id", Text, primary_key=True),
    Column("role", Text, primary_key=True),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("project_id", Text, nullable=False),
    Column("roles", Text, nullable=False),
    Column("audit_id", Text, nullable=False),
    Column("issued_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
)

# Glance's image attributes that the image view lacks: tags, member status, and the rest of the record
# (min_disk, min_ram, protected, checksums, community visibility) in ``image_views.glance`` as JSON.
image_tags = Table(
    "image_tags",
    metadata,
    Column("resource_id", Text, primary_key=True),
    Column("tag", Text, primary_key=True),
)

# Image imports (atoll image import, Glance's glance-direct and web-download): one row per job, run by
# a bounded pool of workers. state: queued → importing → active | killed (reason says why). ``worker`` is
# the process running it (JSON host/pid/start) so a restart resumes or fails it, never leaves it stuck;
# ``scratch`` lists the files to remove if that process dies. ``image_id`` is the id the image gets.
import_jobs = Table(
    "import_jobs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("image_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("owner", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("disk_format", Text),
    Column("options", Text, nullable=False),
    Column("runner", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("reason", Text),
    Column("phase", Text),
    Column("done", BigInteger, nullable=False),
    Column("total", BigInteger),
    Column("attempts", Integer, nullable=False),
    Column("worker", Text),
    Column("scratch", Text),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
)

_V1 = [
    "CREATE TABLE atoll_meta (key TEXT PRIMARY KEY, value TEXT)",
    """CREATE TABLE resources (
        id TEXT PRIMARY KEY, size BIGINT NOT NULL, mode TEXT NOT NULL CHECK (mode IN ('ro', 'rw')),
        backend TEXT NOT NULL, locator TEXT NOT NULL, disk_format TEXT NOT NULL, parent TEXT,
        state TEXT NOT NULL CHECK (state IN ('pending', 'available', 'deleted')), sha256 TEXT,
        owner TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        op TEXT, op_pid INTEGER, op_host TEXT, op_data TEXT)""",
    "CREATE INDEX resources_parent ON resources (parent)",
    "CREATE INDEX resources_state ON resources (state)",
    """CREATE TABLE deps (
        resource_id TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
        requires_id TEXT NOT NULL REFERENCES resources (id),
        PRIMARY KEY (resource_id, requires_id))""",
    "CREATE INDEX deps_requires ON deps (requires_id)",
    """CREATE TABLE object_views (
        resource_id TEXT PRIMARY KEY REFERENCES resources (id) ON DELETE CASCADE,
        container TEXT NOT NULL, name TEXT NOT NULL, content_type TEXT NOT NULL, meta TEXT NOT NULL,
        created_at TEXT NOT NULL, UNIQUE (container, name))""",
    """CREATE TABLE image_views (
        resource_id TEXT PRIMARY KEY REFERENCES resources (id) ON DELETE CASCADE,
        name TEXT NOT NULL UNIQUE, owner TEXT NOT NULL,
        visibility TEXT NOT NULL CHECK (visibility IN ('private', 'shared', 'public')),
        status TEXT NOT NULL, disk_format TEXT NOT NULL, container_format TEXT NOT NULL,
        properties TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    """CREATE TABLE image_members (
        resource_id TEXT NOT NULL REFERENCES image_views (resource_id) ON DELETE CASCADE,
        member TEXT NOT NULL, PRIMARY KEY (resource_id, member))""",
    """CREATE TABLE volume_views (
        resource_id TEXT PRIMARY KEY REFERENCES resources (id) ON DELETE CASCADE,
        name TEXT NOT NULL UNIQUE, status TEXT NOT NULL, ganeti TEXT NOT NULL, created_at TEXT NOT NULL)""",
]

_V2 = [
    """CREATE TABLE attachments (
        resource_id TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
        host TEXT NOT NULL, mode TEXT NOT NULL CHECK (mode IN ('ro', 'rw')),
        access TEXT NOT NULL CHECK (access IN ('kernelspace', 'userspace')),
        kind TEXT NOT NULL CHECK (kind IN ('block', 'file', 'nbd', 'rbd')),
        device TEXT, uri TEXT, state TEXT NOT NULL, created_at TEXT NOT NULL,
        PRIMARY KEY (resource_id, host))""",
]

# The HTTP services (issue 11): identity, and what the Image API (Glance v2) adds to the image view.
# Existing owners (OS user names) become projects of the same name and id, so nothing changes hands;
# shares made by the CLI count as accepted memberships.
_V_API_IMAGE = [
    """CREATE TABLE projects (
        id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, domain_id TEXT NOT NULL, description TEXT NOT NULL,
        enabled INTEGER NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE users (
        id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, domain_id TEXT NOT NULL, password_hash TEXT NOT NULL,
        default_project_id TEXT REFERENCES projects (id) ON DELETE SET NULL, enabled INTEGER NOT NULL,
        created_at TEXT NOT NULL)""",
    """CREATE TABLE role_assignments (
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('admin', 'member', 'reader')),
        PRIMARY KEY (user_id, project_id, role))""",
    """CREATE TABLE tokens (
        token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE, roles TEXT NOT NULL,
        audit_id TEXT NOT NULL, issued_at TEXT NOT NULL, expires_at TEXT NOT NULL)""",
    "CREATE INDEX tokens_user ON tokens (user_id)",
    "CREATE INDEX tokens_expires ON tokens (expires_at)",
    """INSERT INTO projects (id, name, domain_id, description, enabled, created_at)
        SELECT DISTINCT owner, owner, 'default', 'local user', 1, '1970-01-01T00:00:00.000000Z'
        FROM resources""",
    "ALTER TABLE image_members ADD COLUMN status TEXT NOT NULL DEFAULT 'accepted'",
    "ALTER TABLE image_members ADD COLUMN created_at TEXT NOT NULL DEFAULT '1970-01-01T00:00:00.000000Z'",
    "ALTER TABLE image_members ADD COLUMN updated_at TEXT NOT NULL DEFAULT '1970-01-01T00:00:00.000000Z'",
    "ALTER TABLE image_views ADD COLUMN glance TEXT NOT NULL DEFAULT '{}'",
    """CREATE TABLE image_tags (
        resource_id TEXT NOT NULL REFERENCES image_views (resource_id) ON DELETE CASCADE,
        tag TEXT NOT NULL, PRIMARY KEY (resource_id, tag))""",
    "CREATE INDEX image_views_owner ON image_views (owner)",
]

_V_OBJECT_API = [
    """CREATE TABLE blocks (
        backend TEXT NOT NULL, locator TEXT NOT NULL, idx BIGINT NOT NULL, hash TEXT NOT NULL,
        PRIMARY KEY (backend, locator, idx))""",
    "CREATE INDEX blocks_hash ON blocks (hash)",
    """CREATE TABLE digests (
        backend TEXT NOT NULL, locator TEXT NOT NULL, md5 TEXT NOT NULL, PRIMARY KEY (backend, locator))""",
    """CREATE TABLE block_stages (
        resource_id TEXT PRIMARY KEY REFERENCES resources (id) ON DELETE CASCADE,
        created_at TEXT NOT NULL)""",
    """CREATE TABLE containers (
        project TEXT NOT NULL, name TEXT NOT NULL, meta TEXT NOT NULL, read_acl TEXT NOT NULL,
        created_at TEXT NOT NULL, PRIMARY KEY (project, name))""",
]

# Volume API (Cinder v3): quotas, failed creations, a volume's description, metadata and origin (JSON:
# image_id, snapshot_id or source_volid, as the client named it), and the Cinder
# identity of an attachment (its id, the instance and reserved|attaching|attached) on the data path's
# record.
_V_VOLUME_API = [
    """CREATE TABLE quotas (
        project TEXT NOT NULL, resource TEXT NOT NULL, hard_limit BIGINT NOT NULL,
        PRIMARY KEY (project, resource))""",
    """CREATE TABLE volume_failures (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, size BIGINT NOT NULL,
        reason TEXT NOT NULL, created_at TEXT NOT NULL)""",
    "CREATE INDEX volume_failures_owner ON volume_failures (owner)",
    "ALTER TABLE volume_views ADD COLUMN description TEXT",
    "ALTER TABLE volume_views ADD COLUMN meta TEXT",
    "ALTER TABLE volume_views ADD COLUMN origin TEXT",
    "ALTER TABLE attachments ADD COLUMN attachment_id TEXT",
    "ALTER TABLE attachments ADD COLUMN instance_uuid TEXT",
    "ALTER TABLE attachments ADD COLUMN attach_status TEXT",
    "CREATE UNIQUE INDEX attachments_attachment_id ON attachments (attachment_id)",
]


# Stale state and scale: the process serving an attachment (pid + kernel start time, so a reused pid does
# not count as alive), known and forgotten hosts, and the indexes listings and Ganeti lookups use.
_V_RESILIENCE: list[Step] = [
    "ALTER TABLE attachments ADD COLUMN pid INTEGER",
    "ALTER TABLE attachments ADD COLUMN proc_start TEXT",
    "CREATE INDEX attachments_host ON attachments (host)",
    """CREATE TABLE hosts (
        name TEXT PRIMARY KEY, state TEXT NOT NULL CHECK (state IN ('alive', 'forgotten')),
        seen_at TEXT, forgotten_at TEXT)""",
    """CREATE TABLE ganeti_ids (
        resource_id TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
        key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (resource_id, key))""",
    "CREATE INDEX ganeti_ids_lookup ON ganeti_ids (key, value)",
    "CREATE INDEX resources_owner ON resources (owner)",
    "CREATE INDEX resources_locator ON resources (locator)",
    "CREATE INDEX image_views_visibility ON image_views (visibility)",
    "CREATE INDEX image_members_member ON image_members (member)",
    lambda conn: index_ganeti_ids(conn),
]


# Image import jobs (Glance's interoperable import and `atoll image import`).
_V_IMAGE_IMPORT = [
    """CREATE TABLE import_jobs (
        id TEXT PRIMARY KEY, image_id TEXT NOT NULL, name TEXT NOT NULL, owner TEXT NOT NULL,
        method TEXT NOT NULL CHECK (method IN ('local-file', 'glance-direct', 'web-download')),
        source TEXT NOT NULL, disk_format TEXT, options TEXT NOT NULL,
        runner TEXT NOT NULL CHECK (runner IN ('cli', 'server')),
        state TEXT NOT NULL CHECK (state IN ('queued', 'importing', 'active', 'killed')),
        reason TEXT, phase TEXT, done BIGINT NOT NULL, total BIGINT, attempts INTEGER NOT NULL,
        worker TEXT, scratch TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    "CREATE INDEX import_jobs_state ON import_jobs (state)",
    "CREATE INDEX import_jobs_image ON import_jobs (image_id)",
]


# Glance's default listing order (newest first): a page of 25 walks this index and stops, where it sorted
# every image the caller may see (the planner needs the statistics ``atoll serve`` gathers at start);
# the reaper every write runs reads only the pending operations of its host.
_V_LISTING_ORDER = [
    "CREATE INDEX image_views_created ON image_views (created_at, resource_id)",
    "CREATE INDEX resources_pending ON resources (op_host) WHERE state = 'pending'",
]


MIGRATIONS: list[Sequence[Step]] = [
    _V1,
    _V2,
    _V_API_IMAGE,
    _V_OBJECT_API,
    _V_VOLUME_API,
    _V_RESILIENCE,
    _V_IMAGE_IMPORT,
    _V_LISTING_ORDER,
    [per_project_names, *project_names.AFTER],  # names unique per project, not store-wide
]
SCHEMA_VERSION = len(MIGRATIONS)


def ganeti_rows(rid: str, ganeti: Mapping[str, Any]) -> list[dict[str, str]]:
    """The indexed rows of a volume's Ganeti identity: every string value (VOL_NAME, VOL_UUID, …)."""
    return [
        {"resource_id": rid, "key": k, "value": v} for k, v in sorted(ganeti.items()) if isinstance(v, str)
    ]


def index_ganeti_ids(conn: Connection) -> None:
    """Fill ganeti_ids from the volumes' JSON (the data step of _V_RESILIENCE)."""
    conn.execute(delete(ganeti_ids))
    rows = []
    for rid, text in conn.execute(select(volume_views.c.resource_id, volume_views.c.ganeti)):
        rows += ganeti_rows(rid, json.loads(text or "{}"))
    if rows:
        conn.execute(ganeti_ids.insert(), rows)
