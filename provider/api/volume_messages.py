"""Volume API ``/messages`` (microversion 3.3+): the project's user messages, as ``cinder message-list``
and ``openstack volume message list`` read them; show and delete one."""

from __future__ import annotations

from typing import Any

import falcon

from provider.api.base import Api, send_json
from provider.api.volume import PREFIX, VolumeResource, as_int, sort_params
from provider.api.volume_views import stamp
from provider.errors import InvalidInput
from provider.services.volume_api_messages import FILTERS, MessageInfo

MESSAGES = (3, 3)
SORT_KEYS = ("created_at", "id")


def message(m: MessageInfo, base: str) -> dict[str, Any]:
    return {
        "id": m.id,
        "event_id": m.event_id,
        "user_message": m.user_message,
        "message_level": m.message_level,
        "resource_type": m.resource_type,
        "resource_uuid": m.resource_uuid,
        "request_id": m.request_id,
        "created_at": stamp(m.created_at),
        "guaranteed_until": stamp(m.guaranteed_until),
        "links": [{"rel": "self", "href": f"{base}/messages/{m.id}"}],
    }


def _sort_dir(req: falcon.Request) -> str:
    """Messages sort by creation only (``sort=created_at:asc``); newest first by default."""
    key, direction = sort_params(req)
    if key not in SORT_KEYS:
        raise InvalidInput("messages sort by created_at, not %(k)r", k=key)
    return direction


class Messages(VolumeResource):
    min_version = MESSAGES

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        limit, offset = req.get_param("limit"), req.get_param("offset")
        found = store.volume_messages.list(
            {key: value for key in FILTERS if (value := req.get_param(key)) is not None},
            sort_dir=_sort_dir(req),
            limit=as_int(limit, "limit") if limit is not None else None,
            marker=req.get_param("marker"),
            offset=as_int(offset, "offset") if offset is not None else 0,
        )
        send_json(resp, {"messages": [message(m, self.base(project_id)) for m in found]})


class Message(VolumeResource):
    min_version = MESSAGES

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str, message_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        shown = message(store.volume_messages.show(message_id), self.base(project_id))
        # Cinder answers {"message": …}, what cinderclient reads; openstacksdk (openstack volume message
        # show) reads the resource under "messages": both are given, so either client shows it.
        send_json(resp, {"message": shown, "messages": shown})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, project_id: str, message_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        store.volume_messages.delete(message_id)
        resp.status = 204


def register(api: Api) -> None:
    api.route(f"{PREFIX}/messages", Messages(api))
    api.route(f"{PREFIX}/messages/{{message_id}}", Message(api))
