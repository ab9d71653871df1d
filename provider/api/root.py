"""Version discovery (``GET /``, ``GET /v2``: the Image API's versions, as Glance answers them) and the
health check (``GET /healthcheck``: 200 when the catalog answers, 503 otherwise)."""

from __future__ import annotations

import falcon
from sqlalchemy import text

from provider.api.base import Api, send_json
from provider.errors import AtollError

# 2.12: the image tasks API (GET /v2/images/{id}/tasks), which glanceclient asks for by this version; not
# 2.10/2.11 nor 2.13+, Glance's multi-store and cache additions (Glance too lists only what it serves).
IMAGE_VERSIONS = ("2.12", "2.9", "2.8", "2.7", "2.6", "2.5", "2.4", "2.3", "2.2", "2.1", "2.0")


def image_versions(base_url: str) -> dict[str, object]:
    return {
        "versions": [
            {
                "id": f"v{v}",
                "status": "CURRENT" if i == 0 else "SUPPORTED",
                "links": [{"rel": "self", "href": f"{base_url}/v2/"}],
            }
            for i, v in enumerate(IMAGE_VERSIONS)
        ]
    }


class Versions:
    def __init__(self, api: Api, status: int) -> None:
        self.api = api
        self.status = status

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, image_versions(self.api.config.api.base_url), self.status)


class Health:
    def __init__(self, api: Api) -> None:
        self.api = api

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            with self.api.store.catalog.read() as conn:
                conn.execute(text("SELECT 1"))
        except AtollError as e:
            send_json(resp, {"status": "unavailable", "reason": str(e)}, 503)
            return
        send_json(resp, {"status": "ok"})

    on_head = on_get


def register(api: Api) -> None:
    # Glance answers its root with 300 Multiple Choices; keystoneauth's discovery accepts it.
    api.route("/", Versions(api, 300), public=True)
    api.route("/versions", Versions(api, 200), public=True)
    api.route("/v2", Versions(api, 200), public=True)
    api.route("/healthcheck", Health(api), public=True)
