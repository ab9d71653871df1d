"""Glance's interoperable image import over HTTP: discovery, staging, import, and the import tasks.

``GET /v2/info/import`` lists the methods; ``PUT /v2/images/{id}/stage`` stages data (glance-direct);
``POST /v2/images/{id}/import`` queues the job (202); ``GET /v2/images/{id}/tasks`` shows its state,
progress and, when it failed, the reason. The jobs run in this server process's bounded worker pool
(``imports.workers``), which also resumes the jobs a previous process left behind.
"""

from __future__ import annotations

import falcon

from provider.api.base import Api, image_body, read_json, send_json
from provider.services.imports_glance import IMPORT_METHODS
from provider.services.imports_workers import ImportWorkers


class ImportInfo:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        methods = {"description": "Import methods available.", "type": "array", "value": list(IMPORT_METHODS)}
        send_json(resp, {"import-methods": methods})


class Stage:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_put(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        store = self.api.store_for(req)
        limit = self.api.config.api.max_image_size
        stream, declared = image_body(req, limit)
        store.glance_imports.stage(image_id, stream, declared, limit)
        resp.status = 204


class Import:
    def __init__(self, api: Api, workers: _LazyWorkers) -> None:
        self.api = api
        self.workers = workers

    def on_post(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        store = self.api.store_for(req)
        body = read_json(req, self.api.config.api.max_request_body)
        store.glance_imports.start(image_id, body)
        self.workers.get().notify()
        resp.status = 202
        resp.content_type = falcon.MEDIA_TEXT  # an empty body the clients must not parse as JSON
        resp.text = ""


class Tasks:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        store = self.api.store_for(req)
        send_json(resp, {"tasks": store.glance_imports.tasks(image_id)})


class _LazyWorkers:
    """The worker pool of this process, started on first use (after gunicorn's fork) and at start-up."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._workers: ImportWorkers | None = None

    def get(self) -> ImportWorkers:
        if self._workers is None:
            self._workers = ImportWorkers(self.api.config).start()
        return self._workers


def register(api: Api) -> None:
    workers = _LazyWorkers(api)
    api.wake_imports = lambda: workers.get().notify()
    api.route("/v2/info/import", ImportInfo())
    api.route("/v2/images/{image_id}/stage", Stage(api))
    api.route("/v2/images/{image_id}/import", Import(api, workers))
    api.route("/v2/images/{image_id}/tasks", Tasks(api))
    workers.get()  # resume what a previous process left queued or importing
