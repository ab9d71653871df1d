"""The ordered migrations that build the catalog (``provider.catalog.schema`` holds the tables).

Migrations are plain DDL that SQLite and PostgreSQL both accept (or, where data must be converted, a
function of the connection); each one runs exactly once, recorded in ``atoll_meta.schema_version``.
Add a migration by appending to MIGRATIONS; never edit a released one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from sqlalchemy import Connection, delete, select

from provider.catalog import project_names
from provider.catalog.project_names import per_project_names
from provider.catalog.schema import ganeti_ids, ganeti_rows, volume_views

Step = str | Callable[[Connection], None]  # DDL, or a data step run on the migrating connection

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


# The Volume API's user messages (why a volume's creation failed, for ``cinder message-list``).
_V_VOLUME_MESSAGES = [
    """CREATE TABLE volume_messages (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, event_id TEXT NOT NULL, user_message TEXT NOT NULL,
        message_level TEXT NOT NULL, resource_type TEXT NOT NULL, resource_uuid TEXT, request_id TEXT,
        created_at TEXT NOT NULL, guaranteed_until TEXT NOT NULL)""",
    "CREATE INDEX volume_messages_owner ON volume_messages (owner, created_at)",
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
    _V_VOLUME_MESSAGES,
]
SCHEMA_VERSION = len(MIGRATIONS)


def index_ganeti_ids(conn: Connection) -> None:
    """Fill ganeti_ids from the volumes' JSON (the data step of _V_RESILIENCE)."""
    conn.execute(delete(ganeti_ids))
    rows = []
    for rid, text in conn.execute(select(volume_views.c.resource_id, volume_views.c.ganeti)):
        rows += ganeti_rows(rid, json.loads(text or "{}"))
    if rows:
        conn.execute(ganeti_ids.insert(), rows)
