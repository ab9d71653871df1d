"""The application object services register on, request ids, authentication and JSON bodies."""

from __future__ import annotations

import contextvars
import gc
import importlib
import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, cast

import falcon
import orjson

from provider.api import errors as api_errors
from provider.api.body import fast_body
from provider.api.later import Later
from provider.api.services import SERVICE_MODULES
from provider.config import Config
from provider.errors import AtollError, AuthenticationFailed, InvalidInput, PermissionDenied
from provider.services import Caller, Store

LOG = logging.getLogger(__name__)
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
SERVER_CALLER = Caller(name="atoll-api")
INTERFACES = ("public", "internal", "admin")


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every log record (``%(request_id)s``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


@dataclass(frozen=True)
class CatalogEntry:
    type: str
    name: str
    path: str  # appended to the public URL; may contain {project_id}


class Api:
    """The Falcon app plus what services share: configuration, the store, the service catalog."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.catalog_entries: list[CatalogEntry] = []
        self.public: dict[int, frozenset[str]] = {}  # id(resource) -> methods that need no token
        self.signed: dict[int, Signed] = {}  # id(resource) -> who a request signed without a token acts as
        self.reader_writes: set[int] = set()  # id(resource) whose writes the reader role may send
        self._store: Store | None = None
        self._lock = threading.Lock()
        self.later = Later()  # work left for after an answer (per worker process)
        self.wake_imports: Callable[[], None] = lambda: None  # set by the import API: a job was queued
        self.app = falcon.App(middleware=[_Middleware(self)])
        self.app.req_options.strip_url_path_trailing_slash = True
        self.app.add_error_handler(Exception, api_errors.handle_unexpected)
        self.app.add_error_handler(AtollError, api_errors.handle_atoll_error)
        self.app.set_error_serializer(api_errors.serialize_http_error)

    @property
    def store(self) -> Store:
        """The store of this worker process, opened once (after the fork) and shared by its threads."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    store = Store.open(self.config, SERVER_CALLER)
                    store.backend()  # resolved once, shared by every request's store
                    self._store = store
                    gc.freeze()  # the store lives as long as the worker: no collection walks it
        return self._store

    def store_for(self, req: falcon.Request) -> Store:
        """The store acting for the authenticated caller of ``req``."""
        caller = req.context.get("caller")
        if caller is None:
            raise AuthenticationFailed(reason="this request needs an X-Auth-Token")
        return self.store.for_caller(caller)

    def route(
        self,
        template: str,
        resource: object,
        *,
        public: tuple[str, ...] | bool = (),
        signed: Signed | None = None,
        reader_writes: bool = False,
        **kw: Any,
    ) -> None:
        """Add ``resource`` at ``template``; methods in ``public`` (True: all) need no token,
        ``signed`` authorizes a request that carries a signature instead (None: it carries none), and
        ``reader_writes`` lets a token with only the reader role write there (its own token's revocation)."""
        methods = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE") if public is True else public
        if methods:
            self.public[id(resource)] = frozenset(methods or ())
        if signed is not None:
            self.signed[id(resource)] = signed
        if reader_writes:
            self.reader_writes.add(id(resource))
        self.app.add_route(template, resource, **kw)

    def catalog_entry(self, type_: str, name: str, path: str) -> None:
        self.catalog_entries.append(CatalogEntry(type_, name, path))

    def service_catalog(self, project_id: str) -> list[dict[str, Any]]:
        """The Keystone v3 service catalog for a token scoped to ``project_id``."""
        base = self.config.api.base_url
        region = self.config.api.region
        out = []
        for entry in self.catalog_entries:
            url = base + entry.path.format(project_id=project_id)
            sid = uuid.uuid5(uuid.NAMESPACE_URL, f"atoll:{entry.type}").hex
            endpoints = [
                {
                    "id": uuid.uuid5(uuid.NAMESPACE_URL, f"atoll:{entry.type}:{i}").hex,
                    "interface": i,
                    "region": region,
                    "region_id": region,
                    "url": url,
                }
                for i in INTERFACES
            ]
            out.append({"id": sid, "type": entry.type, "name": entry.name, "endpoints": endpoints})
        return out


# Authorizes a request by a signature in it (a Swift temporary URL): its caller, or None when unsigned.
Signed = Callable[[falcon.Request, dict[str, Any]], Caller | None]


class _Middleware:
    """Request ids on every response and log line; authentication by ``X-Auth-Token``."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        rid = f"req-{uuid.uuid4()}"
        REQUEST_ID.set(rid)
        req.context.request_id = rid
        req.context.caller = None
        resp.set_header("X-Openstack-Request-Id", rid)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, succeeded: bool
    ) -> None:
        finish = req.context.get("finish")
        if finish is not None and succeeded:
            finish(req, resp)

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict[str, Any]
    ) -> None:
        if resource is None or req.method == "OPTIONS":
            return
        if req.method in self.api.public.get(id(resource), ()):
            return
        token = req.get_header("X-Auth-Token")
        signed = self.api.signed.get(id(resource))
        if not token and signed is not None:
            req.context.caller = signed(req, params)
            if req.context.caller is not None:
                return
        if not token:
            raise AuthenticationFailed(reason="this request needs an X-Auth-Token")
        info = self.api.store.identity.validate(token)
        req.context.token = info
        req.context.caller = info.caller()
        if (
            req.method in WRITES
            and req.context.caller.read_only
            and id(resource) not in self.api.reader_writes
        ):
            raise PermissionDenied(reason="the reader role may not change anything")


WRITES = frozenset(("POST", "PUT", "PATCH", "DELETE", "COPY"))


def image_body(req: falcon.Request, limit: int) -> tuple[IO[bytes], int | None]:
    """An image upload's streamed body and its declared length: 415 unless application/octet-stream, 413
    when the declared length passes ``limit`` (an undeclared one is bounded while it streams)."""
    given = (req.content_type or "").split(";")[0].strip().lower()
    if given != "application/octet-stream":
        raise api_errors.UnsupportedMediaType(given=given or "(none)", expected="application/octet-stream")
    declared = req.content_length
    if declared is not None and declared > limit:
        raise api_errors.PayloadTooLarge(what="the image", limit=limit)
    if declared is None:
        return cast(IO[bytes], req.stream), None
    return fast_body(req) or cast(IO[bytes], req.bounded_stream), declared


def read_json(req: falcon.Request, limit: int, *types: str) -> Any:
    """The request's JSON body: 415 for another content type, 413 past ``limit``, 400 if malformed."""
    accepted = types or ("application/json",)
    given = (req.content_type or "").split(";")[0].strip().lower()
    if given not in accepted:
        raise api_errors.UnsupportedMediaType(given=given or "(none)", expected=" or ".join(accepted))
    if req.content_length is not None and req.content_length > limit:
        raise api_errors.PayloadTooLarge(what="the request body", limit=limit)
    raw = req.bounded_stream.read(limit + 1)
    if len(raw) > limit:
        raise api_errors.PayloadTooLarge(what="the request body", limit=limit)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInput("malformed JSON in the request body: %(e)s", e=str(e)) from e


def send_json(resp: falcon.Response, data: Any, status: int = 200) -> None:
    """``data`` as the JSON body (orjson: a page of 1,000 images encodes in a tenth of json's time)."""
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(data)


def create_app(config: Config) -> Api:
    """Build the application with every service in SERVICE_MODULES registered."""
    api = Api(config)
    for name in SERVICE_MODULES:
        importlib.import_module(name).register(api)
    return api
