"""The read side of Keystone v3's directory, as ``openstack user|role|domain list|show`` and ``openstack
role assignment list [--names]`` use it: ``/v3/users[/{id}]`` (admins; a user reads itself),
``/v3/roles[/{id}]`` (Atoll's three roles, each named as its id, as in the token body),
``/v3/role_assignments`` (admins; a user its own) and ``/v3/domains[/{id}]`` (the one ``Default`` domain).
Users, projects and grants are managed with the ``atoll user|project`` commands, not over HTTP.
"""

from __future__ import annotations

from typing import Any

import falcon

from provider.api.base import Api, send_json
from provider.errors import NotFound, PermissionDenied
from provider.services.identity import DOMAIN_ID, DOMAIN_NAME, ROLES, User


def _links(req: falcon.Request, base: str) -> dict[str, Any]:
    return {"self": f"{base}{req.path}", "next": None, "previous": None}


def _user(u: User, base: str) -> dict[str, Any]:
    return {
        "id": u.id,
        "name": u.name,
        "domain_id": DOMAIN_ID,
        "enabled": True,
        "default_project_id": u.default_project_id,
        "password_expires_at": None,
        "options": {},
        "links": {"self": f"{base}/v3/users/{u.id}"},
    }


def _role(name: str, base: str) -> dict[str, Any]:
    return {
        "id": name,
        "name": name,
        "domain_id": None,
        "description": None,
        "options": {},
        "links": {"self": f"{base}/v3/roles/{name}"},
    }


def _domain(base: str) -> dict[str, Any]:
    return {
        "id": DOMAIN_ID,
        "name": DOMAIN_NAME,
        "enabled": True,
        "description": "",
        "tags": [],
        "options": {},
        "links": {"self": f"{base}/v3/domains/{DOMAIN_ID}"},
    }


class Users:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response, user_id: str | None = None) -> None:
        identity, base = self.api.store_for(req).identity, self.api.config.api.base_url
        if user_id is not None:
            send_json(resp, {"user": _user(identity.show_user(user_id), base)})
            return
        found = identity.find_users(req.get_param("name"))
        send_json(resp, {"users": [_user(u, base) for u in found], "links": _links(req, base)})


class Roles:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response, role_id: str | None = None) -> None:
        base = self.api.config.api.base_url
        if role_id is not None:
            if role_id not in ROLES:
                raise NotFound(what="role", ref=role_id)
            send_json(resp, {"role": _role(role_id, base)})
            return
        wanted = req.get_param("name")
        roles = [_role(r, base) for r in ROLES if wanted in (None, r)]
        send_json(resp, {"roles": roles, "links": _links(req, base)})


class RoleAssignments:
    """Filters ``user.id``, ``scope.project.id`` and ``role.id``; ``include_names`` adds the names."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        store, base = self.api.store_for(req), self.api.config.api.base_url
        user, project, role = (req.get_param(k) for k in ("user.id", "scope.project.id", "role.id"))
        if store.caller.admin:
            users = store.identity.list_users()
        elif user is not None:
            users = [store.identity.show_user(user)]  # one's own (403 for anyone else's)
        else:
            raise PermissionDenied(reason="only an admin may list every role assignment")
        names = req.get_param_as_bool("include_names") or False
        found = [
            _assignment(u, p, r, names)
            for u in users
            for p, r in u.roles
            if user in (None, u.id, u.name) and project in (None, p) and role in (None, r)
        ]
        send_json(resp, {"role_assignments": found, "links": _links(req, base)})


def _assignment(u: User, project: str, role: str, names: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"user": {"id": u.id}, "role": {"id": role}, "scope": {"project": {"id": project}}}
    if names:
        body["user"].update(name=u.name, domain={"id": DOMAIN_ID, "name": DOMAIN_NAME})
        body["role"]["name"] = role
        body["scope"]["project"].update(name=project, domain={"id": DOMAIN_ID, "name": DOMAIN_NAME})
    body["links"] = {"assignment": f"/v3/projects/{project}/users/{u.id}/roles/{role}"}
    return body


class Domains:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response, domain_id: str | None = None) -> None:
        base = self.api.config.api.base_url
        if domain_id is not None:
            if domain_id not in (DOMAIN_ID, DOMAIN_NAME):
                raise NotFound(what="domain", ref=domain_id)
            send_json(resp, {"domain": _domain(base)})
            return
        wanted = req.get_param("name")
        found = [_domain(base)] if wanted in (None, DOMAIN_NAME) else []
        send_json(resp, {"domains": found, "links": _links(req, base)})


def register(api: Api) -> None:
    api.route("/v3/users", Users(api))
    api.route("/v3/users/{user_id}", Users(api))
    api.route("/v3/roles", Roles(api))
    api.route("/v3/roles/{role_id}", Roles(api))
    api.route("/v3/role_assignments", RoleAssignments(api))
    api.route("/v3/domains", Domains(api))
    api.route("/v3/domains/{domain_id}", Domains(api))
