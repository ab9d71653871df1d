"""Identity over HTTP: the Keystone v3 subset keystoneauth1 needs.

``GET /v3`` (version discovery), ``POST /v3/auth/tokens`` (password or token method; user and project
by name or id in the ``Default`` domain; the token comes back in ``X-Subject-Token``), ``GET``/``HEAD``
``/v3/auth/tokens`` (validate ``X-Subject-Token``), ``DELETE`` (revoke), ``GET /v3/auth/catalog``, and
the projects clients resolve names with: ``GET /v3/projects/{id}`` (an admin, or a token of that project;
others 403, as Keystone), ``GET /v3/projects?name=`` (admins) and ``GET /v3/auth/projects`` (one's own).
"""

from __future__ import annotations

from typing import Any

import falcon

from provider.api.base import Api, read_json, send_json
from provider.errors import AuthenticationFailed, InvalidInput, PermissionDenied
from provider.services.identity import DOMAIN_ID, DOMAIN_NAME, Project, Token

VERSION = "v3.14"
UPDATED = "2020-04-07T00:00:00Z"


def _domain() -> dict[str, str]:
    return {"id": DOMAIN_ID, "name": DOMAIN_NAME}


def _check_domain(obj: dict[str, Any], what: str) -> None:
    dom = obj.get("domain")
    if dom is None:
        return
    if not isinstance(dom, dict) or (
        dom.get("id", DOMAIN_ID) != DOMAIN_ID or dom.get("name", DOMAIN_NAME) != DOMAIN_NAME
    ):
        raise AuthenticationFailed(reason=f"{what}: only the {DOMAIN_NAME} domain exists")


class Version:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        href = f"{self.api.config.api.base_url}/v3/"
        send_json(
            resp,
            {
                "version": {
                    "id": VERSION,
                    "status": "stable",
                    "updated": UPDATED,
                    "links": [{"rel": "self", "href": href}],
                    "media-types": [
                        {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
                    ],
                }
            },
        )


class Tokens:
    def __init__(self, api: Api) -> None:
        self.api = api

    def token_body(self, info: Token) -> dict[str, Any]:
        return {
            "token": {
                "methods": ["password"],
                "user": {
                    "id": info.user_id,
                    "name": info.user_name,
                    "domain": _domain(),
                    "password_expires_at": None,
                },
                "project": {"id": info.project_id, "name": info.project_name, "domain": _domain()},
                "roles": [{"id": r, "name": r} for r in info.roles],
                "is_domain": False,
                "audit_ids": [info.audit_id],
                "issued_at": info.issued_at,
                "expires_at": info.expires_at,
                "catalog": self.api.service_catalog(info.project_id),
            }
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req, self.api.config.api.max_request_body)
        try:
            auth = body["auth"]
            identity = auth["identity"]
            methods = identity["methods"]
        except (KeyError, TypeError):
            raise InvalidInput("the body needs auth.identity.methods") from None
        project = self._scope(auth.get("scope"))
        ttl = self.api.config.api.token_ttl
        identity_svc = self.api.store.identity
        if "password" in methods:
            user, password = self._password(identity.get("password"))
            token, info = identity_svc.authenticate(user, password, project, ttl)
        elif "token" in methods:
            old = identity_svc.validate(str((identity.get("token") or {}).get("id", "")))
            token, info = identity_svc.issue(old.user_id, project or old.project_id, ttl)
        else:
            raise AuthenticationFailed(reason="only the password and token methods are supported")
        resp.set_header("X-Subject-Token", token)
        send_json(resp, self.token_body(info), 201)

    @staticmethod
    def _password(section: Any) -> tuple[str, str]:
        try:
            user = section["user"]
            password = user["password"]
        except (KeyError, TypeError):
            raise InvalidInput("the password method needs user and user.password") from None
        _check_domain(user, "user")
        name = user.get("name") or user.get("id")
        if not isinstance(name, str) or not isinstance(password, str):
            raise InvalidInput("user name (or id) and password must be strings")
        return name, password

    @staticmethod
    def _scope(scope: Any) -> str | None:
        if scope is None:
            return None
        if not isinstance(scope, dict) or not isinstance(scope.get("project"), dict):
            raise InvalidInput("only project scopes are supported")
        project = scope["project"]
        _check_domain(project, "project")
        ref = project.get("id") or project.get("name")
        if not isinstance(ref, str):
            raise InvalidInput("the project scope needs a name or id")
        return ref

    def _subject(self, req: falcon.Request) -> tuple[str, Token]:
        subject = req.get_header("X-Subject-Token")
        if not subject:
            raise InvalidInput("X-Subject-Token is missing")
        info = self.api.store.identity.validate(subject)
        mine: Token = req.context.token
        if info.user_id != mine.user_id and "admin" not in mine.roles:
            raise PermissionDenied(reason="only an admin may look at another user's token")
        return subject, info

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        subject, info = self._subject(req)
        resp.set_header("X-Subject-Token", subject)
        send_json(resp, self.token_body(info))

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._subject(req)
        resp.status = 200

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        subject, _ = self._subject(req)
        self.api.store.identity.revoke(subject)
        resp.status = 204


class Catalog:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, {"catalog": self.api.service_catalog(req.context.token.project_id)})


def _project(p: Project, base: str) -> dict[str, Any]:
    return {
        **p.to_dict(),
        "description": "",
        "is_domain": False,
        "parent_id": DOMAIN_ID,
        "tags": [],
        "options": {},
        "links": {"self": f"{base}/v3/projects/{p.id}"},
    }


class Projects:
    """``GET /v3/projects[?name=N]`` (admins), ``GET /v3/auth/projects`` (the caller's own),
    ``GET /v3/users/{user_id}/projects`` (one's own, or any user's to an admin)."""

    def __init__(self, api: Api, mine: bool) -> None:
        self.api, self.mine = api, mine

    def on_get(self, req: falcon.Request, resp: falcon.Response, user_id: str | None = None) -> None:
        identity = self.api.store_for(req).identity
        found = identity.projects_of(user_id) if self.mine else identity.find_projects(req.get_param("name"))
        base = self.api.config.api.base_url
        links = {"self": f"{base}{req.path}", "next": None, "previous": None}
        send_json(resp, {"projects": [_project(p, base) for p in found], "links": links})


class ProjectOne:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        found = self.api.store_for(req).identity.show_project(project_id)
        send_json(resp, {"project": _project(found, self.api.config.api.base_url)})


def register(api: Api) -> None:
    api.catalog_entry("identity", "keystone", "/v3")
    api.route("/v3", Version(api), public=True)
    api.route("/v3/auth/tokens", Tokens(api), public=("POST",), reader_writes=True)
    api.route("/v3/auth/catalog", Catalog(api))
    api.route("/v3/auth/projects", Projects(api, mine=True))
    api.route("/v3/projects", Projects(api, mine=False))
    api.route("/v3/projects/{project_id}", ProjectOne(api))
    api.route("/v3/users/{user_id}/projects", Projects(api, mine=True))
