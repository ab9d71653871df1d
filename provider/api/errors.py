"""AtollError → HTTP status and the JSON error body the OpenStack clients parse.

The body is ``{"error": {"code": 404, "title": "Not Found", "message": "…"}}``: keystoneauth reads
``error.message``, python-glanceclient joins the ``message`` of every top-level object, and openstacksdk
falls back to the keystoneauth parse, so one shape serves all three.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import falcon

from provider import errors

LOG = logging.getLogger(__name__)

STATUS: tuple[tuple[type[errors.AtollError], int], ...] = (
    (errors.AuthenticationFailed, 401),
    (errors.PermissionDenied, 403),
    (errors.NotFound, 404),
    (errors.AlreadyExists, 409),
    (errors.Ambiguous, 409),
    (errors.InUse, 409),
    (errors.Conflict, 409),
    (errors.StorageFull, 413),
    (errors.TooLarge, 413),
    (errors.InvalidInput, 400),
    (errors.CapabilityNotSupported, 400),
)


PayloadTooLarge = errors.TooLarge


class UnsupportedMediaType(errors.AtollError):
    message = "content type %(given)r is not supported here: use %(expected)s"


class MethodNotAllowed(errors.AtollError):
    message = "%(method)s is not allowed on %(path)s"


_EXTRA: dict[type[errors.AtollError], int] = {
    errors.ChecksumMismatch: 422,
    UnsupportedMediaType: 415,
    MethodNotAllowed: 405,
}


def status_of(exc: errors.AtollError) -> int:
    for cls, code in _EXTRA.items():
        if isinstance(exc, cls):
            return code
    for cls, code in STATUS:
        if isinstance(exc, cls):
            return code
    return 500


def error_body(code: int, message: str) -> bytes:
    title = falcon.code_to_http_status(code).split(" ", 1)[1]
    return json.dumps({"error": {"code": code, "title": title, "message": message}}).encode()


def handle_atoll_error(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    assert isinstance(ex, errors.AtollError)
    code = status_of(ex)
    if code >= 500:
        LOG.error("%s %s failed: %s", req.method, req.path, ex)
    resp.status = code
    resp.content_type = falcon.MEDIA_JSON
    resp.data = error_body(code, str(ex))
    if code == 401:
        resp.set_header("WWW-Authenticate", 'Keystone uri="/v3"')


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    LOG.exception("%s %s: unexpected error", req.method, req.path)
    resp.status = 500
    resp.content_type = falcon.MEDIA_JSON
    resp.data = error_body(500, "internal error (see the server log for the request id)")


def serialize_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError) -> None:
    """Falcon's own errors (unknown route, bad method, malformed header…) in the same JSON shape."""
    resp.content_type = falcon.MEDIA_JSON
    resp.data = error_body(ex.status_code, ex.description or ex.title or "")
