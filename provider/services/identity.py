"""Identity (a Keystone v3 subset): projects, users, role assignments and tokens.

A project owns resources; its id is what ``resources.owner`` and ``image_views.owner`` hold. Projects
created here get id = name, so the local CLI's OS user *is* the project of the same name and the CLI
keeps owning what it owned (the catalog migration turns every existing owner into such a project).
Passwords are argon2id hashes; a token is 32 random bytes handed out once and stored only as its
sha256, so validating one is a single indexed query (no argon2 per request). Deleting a user deletes its
tokens in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Row, bindparam, delete, select

from provider.catalog import schema as t
from provider.errors import AlreadyExists, AuthenticationFailed, InvalidInput, NotFound, PermissionDenied
from provider.services.base import Caller, Service
from provider.utils.host import now
from provider.utils.names import check_name

ROLES = ("admin", "member", "reader")
DOMAIN_ID = "default"
DOMAIN_NAME = "Default"
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Hashed once per process, on the first unknown user (not at import: every CLI start would pay
    for an argon2 hash), so an unknown user costs as much as a wrong password (no enumeration by timing)."""
    return _HASHER.hash(secrets.token_hex(16))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    enabled: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "domain_id": DOMAIN_ID, "enabled": self.enabled}


@dataclass(frozen=True)
class User:
    id: str
    name: str
    default_project_id: str | None
    roles: tuple[tuple[str, str], ...] = ()  # (project id, role)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "domain_id": DOMAIN_ID,
            "default_project_id": self.default_project_id,
            "roles": [{"project": p, "role": r} for p, r in self.roles],
        }


@dataclass(frozen=True)
class Token:
    """A validated token: who, for which project, with which roles, until when."""

    user_id: str
    user_name: str
    project_id: str
    project_name: str
    roles: tuple[str, ...]
    audit_id: str
    issued_at: str
    expires_at: str

    def caller(self) -> Caller:
        return Caller(
            name=self.project_id, admin="admin" in self.roles, roles=self.roles, user=self.user_name
        )


# Built once: validation runs on every request, and composing the statement costs more than running it.
_VALIDATE = (
    select(t.tokens, t.users.c.name.label("user_name"), t.projects.c.name.label("project_name"))
    .join(t.users, t.users.c.id == t.tokens.c.user_id)
    .join(t.projects, t.projects.c.id == t.tokens.c.project_id)
    .where(t.tokens.c.token_hash == bindparam("token_hash"))
)


class IdentityService(Service):
    # ---- projects --------------------------------------------------------------------------------
    def _require_admin(self) -> None:
        if not self.caller.admin:
            raise PermissionDenied(reason="only an admin may manage projects and users")

    def create_project(self, name: str, description: str = "") -> Project:
        """A project whose id is its name (as the CLI's OS users are)."""
        self._require_admin()
        check_name(name, "project name")
        with self.catalog.write() as conn:
            if conn.execute(select(t.projects.c.id).where(t.projects.c.name == name)).first():
                raise AlreadyExists(what="project", name=name)
            conn.execute(
                t.projects.insert().values(
                    id=name,
                    name=name,
                    domain_id=DOMAIN_ID,
                    description=description,
                    enabled=1,
                    created_at=now(),
                )
            )
        return Project(id=name, name=name)

    def ensure_project(self, conn: Connection, name: str) -> None:
        """The project ``name`` exists (the local CLI's OS user becomes one on first use). Callers hold
        per-resource locks only, so the first use takes the project's own lock (always last: no cycle)."""
        exists = select(t.projects.c.id).where(t.projects.c.id == name)
        if conn.execute(exists).first() is not None:
            return
        self.catalog.lock_keys(conn, f"project:{name}")
        if conn.execute(exists).first() is None:
            conn.execute(
                t.projects.insert().values(
                    id=name,
                    name=name,
                    domain_id=DOMAIN_ID,
                    description="local user",
                    enabled=1,
                    created_at=now(),
                )
            )

    def list_projects(self) -> list[Project]:
        with self.catalog.read() as conn:
            rows = conn.execute(select(t.projects).order_by(t.projects.c.name)).all()
        return [Project(id=r.id, name=r.name, enabled=bool(r.enabled)) for r in rows]

    def show_project(self, ref: str) -> Project:
        """Project ``ref`` (id or name), to an admin or to a token scoped to it. Keystone answers anyone
        else 403, which clients such as ``openstack image add project`` take as "use the id as given"."""
        with self.catalog.read() as conn:
            row = self._project(conn, ref) if self.caller.admin else None
            if row is None:
                row = conn.execute(select(t.projects).where(t.projects.c.id == self.caller.name)).first()
                if row is None or ref not in (row.id, row.name):
                    raise PermissionDenied(reason="only an admin may look at another project")
        return Project(id=row.id, name=row.name, enabled=bool(row.enabled))

    def find_projects(self, name: str | None = None) -> list[Project]:
        """Every project (``name``: the one of that name), to an admin only, as Keystone lists them."""
        self._require_admin()
        return [p for p in self.list_projects() if name is None or p.name == name]

    def projects_of(self, user: str | None = None) -> list[Project]:
        """The projects where ``user`` (default: the caller's user) has a role; another user's only to
        an admin (``GET /v3/auth/projects``, ``GET /v3/users/{id}/projects``)."""
        with self.catalog.read() as conn:
            row = self._user(conn, user or self.caller.user or "")
            if row.name != self.caller.user and not self.caller.admin:
                raise PermissionDenied(reason="only an admin may list another user's projects")
            rows = conn.execute(
                select(t.projects)
                .join(t.role_assignments, t.role_assignments.c.project_id == t.projects.c.id)
                .where(t.role_assignments.c.user_id == row.id)
                .distinct()
                .order_by(t.projects.c.name)
            ).all()
        return [Project(id=r.id, name=r.name, enabled=bool(r.enabled)) for r in rows]

    def _project(self, conn: Connection, ref: str) -> Row[Any]:
        row = conn.execute(
            select(t.projects).where((t.projects.c.id == ref) | (t.projects.c.name == ref))
        ).first()
        if row is None:
            raise NotFound(what="project", ref=ref)
        return row

    # ---- users -----------------------------------------------------------------------------------
    def create_user(self, name: str, password: str, project: str, role: str = "member") -> User:
        """A user with ``role`` on ``project``; the password is stored as an argon2 hash only."""
        self._require_admin()
        check_name(name, "user name")
        if role not in ROLES:
            raise InvalidInput("role %(role)r is not one of %(all)s", role=role, all=", ".join(ROLES))
        if len(password) < 8:
            raise InvalidInput("a password needs at least 8 characters")
        hashed = _HASHER.hash(password)
        with self.catalog.write() as conn:
            proj = self._project(conn, project)
            if conn.execute(select(t.users.c.id).where(t.users.c.name == name)).first():
                raise AlreadyExists(what="user", name=name)
            uid = uuid.uuid4().hex
            conn.execute(
                t.users.insert().values(
                    id=uid,
                    name=name,
                    domain_id=DOMAIN_ID,
                    password_hash=hashed,
                    default_project_id=proj.id,
                    enabled=1,
                    created_at=now(),
                )
            )
            conn.execute(t.role_assignments.insert().values(user_id=uid, project_id=proj.id, role=role))
        return User(id=uid, name=name, default_project_id=proj.id, roles=((proj.id, role),))

    def grant(self, user: str, project: str, role: str) -> None:
        self._require_admin()
        if role not in ROLES:
            raise InvalidInput("role %(role)r is not one of %(all)s", role=role, all=", ".join(ROLES))
        with self.catalog.write() as conn:
            uid = self._user(conn, user).id
            pid = self._project(conn, project).id
            exists = conn.execute(
                select(t.role_assignments).where(
                    t.role_assignments.c.user_id == uid,
                    t.role_assignments.c.project_id == pid,
                    t.role_assignments.c.role == role,
                )
            ).first()
            if exists is None:
                conn.execute(t.role_assignments.insert().values(user_id=uid, project_id=pid, role=role))

    def _user(self, conn: Connection, ref: str) -> Row[Any]:
        row = conn.execute(select(t.users).where((t.users.c.id == ref) | (t.users.c.name == ref))).first()
        if row is None:
            raise NotFound(what="user", ref=ref)
        return row

    def list_users(self) -> list[User]:
        with self.catalog.read() as conn:
            users = conn.execute(select(t.users).order_by(t.users.c.name)).all()
            grants = conn.execute(select(t.role_assignments)).all()
        by_user: dict[str, list[tuple[str, str]]] = {}
        for g in grants:
            by_user.setdefault(g.user_id, []).append((g.project_id, g.role))
        return [
            User(
                id=u.id,
                name=u.name,
                default_project_id=u.default_project_id,
                roles=tuple(sorted(by_user.get(u.id, []))),
            )
            for u in users
        ]

    def find_users(self, name: str | None = None) -> list[User]:
        """Keystone's user listing (``?name=`` filters): for admins only, as Keystone's default policy."""
        if not self.caller.admin:
            raise PermissionDenied(reason="only an admin may list users")
        return [u for u in self.list_users() if name in (None, u.name)]

    def show_user(self, ref: str) -> User:
        """A user by id or name: one's own, or any to an admin (others are 403, found or not, as Keystone)."""
        found = next((u for u in self.list_users() if ref in (u.id, u.name)), None)
        if not self.caller.admin and (found is None or found.name != self.caller.user):
            raise PermissionDenied(reason="only an admin may read another user")
        if found is None:
            raise NotFound(what="user", ref=ref)
        return found

    def delete_user(self, ref: str) -> None:
        """Delete the user, its role assignments and every token it holds (revoked at once)."""
        self._require_admin()
        with self.catalog.write() as conn:
            uid = self._user(conn, ref).id
            conn.execute(delete(t.tokens).where(t.tokens.c.user_id == uid))
            conn.execute(delete(t.role_assignments).where(t.role_assignments.c.user_id == uid))
            conn.execute(delete(t.users).where(t.users.c.id == uid))

    # ---- tokens ----------------------------------------------------------------------------------
    def authenticate(self, user: str, password: str, project: str | None, ttl: int) -> tuple[str, Token]:
        """Check the password; issue a token scoped to ``project`` (default: the user's default
        project). Returns the token (shown once) and what it carries."""
        with self.catalog.read() as conn:
            row = conn.execute(
                select(t.users).where((t.users.c.name == user) | (t.users.c.id == user))
            ).first()
        if row is None:
            self._verify(_dummy_hash(), password)
            raise AuthenticationFailed(reason="wrong user name or password")
        if not self._verify(row.password_hash, password) or not row.enabled:
            raise AuthenticationFailed(reason="wrong user name or password")
        return self.issue(row.id, project or row.default_project_id, ttl)

    @staticmethod
    def _verify(hashed: str, password: str) -> bool:
        try:
            return _HASHER.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    def issue(self, user_id: str, project: str | None, ttl: int) -> tuple[str, Token]:
        """A new token for ``user_id`` on ``project`` (by id or name) with the roles it has there."""
        if project is None:
            raise AuthenticationFailed(reason="no project to scope the token to")
        token = secrets.token_urlsafe(32)
        issued = dt.datetime.now(dt.UTC)
        with self.catalog.write() as conn:
            user = self._user(conn, user_id)
            try:
                proj = self._project(conn, project)
            except NotFound:
                raise AuthenticationFailed(reason=f"no access to project {project!r}") from None
            roles = tuple(
                sorted(
                    r
                    for (r,) in conn.execute(
                        select(t.role_assignments.c.role).where(
                            t.role_assignments.c.user_id == user.id,
                            t.role_assignments.c.project_id == proj.id,
                        )
                    )
                )
            )
            if not roles or not proj.enabled:
                raise AuthenticationFailed(reason=f"no access to project {project!r}")
            info = Token(
                user_id=user.id,
                user_name=user.name,
                project_id=proj.id,
                project_name=proj.name,
                roles=roles,
                audit_id=secrets.token_urlsafe(16),
                issued_at=_stamp(issued),
                expires_at=_stamp(issued + dt.timedelta(seconds=ttl)),
            )
            conn.execute(
                t.tokens.insert().values(
                    token_hash=hash_token(token),
                    user_id=user.id,
                    project_id=proj.id,
                    roles=json.dumps(roles),
                    audit_id=info.audit_id,
                    issued_at=info.issued_at,
                    expires_at=info.expires_at,
                )
            )
            conn.execute(delete(t.tokens).where(t.tokens.c.expires_at < info.issued_at))
        return token, info

    def validate(self, token: str) -> Token:
        """What ``token`` carries, if it exists and has not expired (one indexed query)."""
        with self.catalog.read() as conn:
            row = conn.execute(_VALIDATE, {"token_hash": hash_token(token)}).first()
        if row is None or row.expires_at <= now():
            raise AuthenticationFailed(reason="the token is invalid, expired or revoked")
        return Token(
            user_id=row.user_id,
            user_name=row.user_name,
            project_id=row.project_id,
            project_name=row.project_name,
            roles=tuple(json.loads(row.roles)),
            audit_id=row.audit_id,
            issued_at=row.issued_at,
            expires_at=row.expires_at,
        )

    def revoke(self, token: str) -> None:
        with self.catalog.write() as conn:
            gone = conn.execute(delete(t.tokens).where(t.tokens.c.token_hash == hash_token(token)))
        if gone.rowcount == 0:
            raise NotFound(what="token", ref="(given)")
