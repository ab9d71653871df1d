"""Table definitions: the current schema, as ``provider.catalog.migrations`` builds it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text

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

# Volume API user messages (Cinder's ``/messages``): why an asynchronous request of a project failed,
# kept until ``guaranteed_until`` or until the project deletes the message.
volume_messages = Table(
    "volume_messages",
    metadata,
    Column("id", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("user_message", Text, nullable=False),
    Column("message_level", Text, nullable=False),
    Column("resource_type", Text, nullable=False),
    Column("resource_uuid", Text),
    Column("request_id", Text),
    Column("created_at", Text, nullable=False),
    Column("guaranteed_until", Text, nullable=False),
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


def ganeti_rows(rid: str, ganeti: Mapping[str, Any]) -> list[dict[str, str]]:
    """The indexed rows of a volume's Ganeti identity: every string value (VOL_NAME, VOL_UUID, …)."""
    return [
        {"resource_id": rid, "key": k, "value": v} for k, v in sorted(ganeti.items()) if isinstance(v, str)
    ]
