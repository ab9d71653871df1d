"""Swift objects: ``PUT/GET/HEAD/POST/DELETE/COPY /v1/AUTH_<project>/<container>/<object>``.

A PUT streams into the backend with the md5 checked against ``ETag``; ``COPY`` and ``X-Copy-From`` are
thin clones; ``GET ?hashmap`` and ``PUT ?hashmap`` speak Pithos' sync protocol (409 lists the missing
block hashes). Every object answers with its resource id in ``X-Atoll-Id``.
"""

from __future__ import annotations

import json
from typing import Any

import falcon

from provider.api.base import Api, send_json
from provider.api.swift_http import (
    flag,
    http_date,
    meta_headers,
    parse_stamp,
    request_body,
    require_owner,
    set_meta_headers,
    timestamp,
)
from provider.errors import InvalidInput, MissingBlocks, NotFound
from provider.model import Resource
from provider.services import Store
from provider.services.object_data import open_range

MAX_HASHMAP_BODY = 64 << 20  # a hashmap of 16 TiB


def _unquote(etag: str | None) -> str | None:
    return etag.strip().strip('"').lower() if etag else None


class ObjectResource:
    def __init__(self, api: Api) -> None:
        self.api = api

    # ---- writes ----------------------------------------------------------------------------------
    def on_put(
        self, req: falcon.Request, resp: falcon.Response, account: str, container: str, name: str
    ) -> None:
        require_owner(req, account)
        store = self.api.store_for(req)
        if not store.containers.exists(account, container):
            raise NotFound(what="container", ref=container)
        path = f"{container}/{name}"
        _refuse_manifest(req)
        meta, _ = meta_headers(req, "Object")
        ctype = req.content_type or "application/octet-stream"
        if flag(req, "hashmap"):
            self._put_hashmap(req, resp, store, path, meta, ctype)
            return
        source = req.get_header("X-Copy-From")
        if source:
            res = store.objects.copy(
                self._source(store, account, source), path, meta=meta, content_type=ctype
            )
        else:
            res = store.objects.upload(
                path,
                request_body(req),
                meta=meta,
                content_type=ctype,
                digest=True,
                defer_sha256=True,
                expect_md5=_unquote(req.get_header("ETag")),
                expect_size=req.content_length,
                replace=True,
            )
            # the md5 (ETag) and the block hashes came from the bytes received; the sha256 that scrub
            # checks against is read back from the store after the client has its answer
            self.api.later.run(store.scrub.record_digest, res.id)
        self._headers(store, resp, res)
        resp.status = falcon.HTTP_201

    def _put_hashmap(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        store: Store,
        path: str,
        meta: dict[str, str],
        ctype: str,
    ) -> None:
        raw = req.bounded_stream.read(MAX_HASHMAP_BODY + 1)
        if len(raw) > MAX_HASHMAP_BODY:
            raise InvalidInput("a hashmap body is limited to %(n)d bytes", n=MAX_HASHMAP_BODY)
        try:
            body: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidInput("malformed hashmap JSON: %(e)s", e=str(e)) from e
        hashes = body.get("hashes") if isinstance(body, dict) else body
        size = body.get("bytes") if isinstance(body, dict) else None
        if size is not None and not isinstance(size, int):
            raise InvalidInput("hashmap 'bytes' must be an integer")
        try:
            res = store.hashmaps.put(path, hashes, size=size, meta=meta, content_type=ctype, replace=True)
        except MissingBlocks as e:
            send_json(resp, e.hashes, 409)
            return
        self._headers(store, resp, res)
        resp.status = falcon.HTTP_201

    def _source(self, store: Store, account: str, source: str) -> str:
        container, _, name = source.lstrip("/").partition("/")
        return store.containers.open_object(account, container, name).id

    def on_copy(
        self, req: falcon.Request, resp: falcon.Response, account: str, container: str, name: str
    ) -> None:
        dest = (req.get_header("Destination") or "").lstrip("/")
        if "/" not in dest:
            raise InvalidInput("COPY needs a Destination: <container>/<object> header")
        require_owner(req, account)
        store = self.api.store_for(req)
        if not store.containers.exists(account, dest.split("/", 1)[0]):
            raise NotFound(what="container", ref=dest.split("/", 1)[0])
        meta, _ = meta_headers(req, "Object")
        src = store.containers.open_object(account, container, name)
        res = store.objects.copy(src.id, dest, meta=meta, content_type=req.content_type)
        self._headers(store, resp, res)
        resp.set_header("X-Copied-From", f"{container}/{name}")
        resp.status = falcon.HTTP_201

    def on_post(
        self, req: falcon.Request, resp: falcon.Response, account: str, container: str, name: str
    ) -> None:
        require_owner(req, account)
        store = self.api.store_for(req)
        res = store.containers.open_object(account, container, name)
        meta, _ = meta_headers(req, "Object")
        old = res.object.meta if res.object else {}
        store.objects.set_meta(res.id, meta, [k for k in old if k not in meta])
        resp.status = falcon.HTTP_202

    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, account: str, container: str, name: str
    ) -> None:
        require_owner(req, account)
        store = self.api.store_for(req)
        store.objects.delete(store.containers.open_object(account, container, name).id)
        resp.status = falcon.HTTP_204

    # ---- reads -----------------------------------------------------------------------------------
    def on_head(
        self, req: falcon.Request, resp: falcon.Response, account: str, container: str, name: str
    ) -> None:
        store = self.api.store_for(req)
        res = store.containers.open_object(account, container, name)
        if self._headers(store, resp, res, req):
            resp.content_length = res.size
            resp.status = falcon.HTTP_200

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, account: str, container: str, name: str
    ) -> None:
        store = self.api.store_for(req)
        res = store.containers.open_object(account, container, name)
        if flag(req, "hashmap"):
            send_json(resp, store.hashmaps.hashmap(res.id).to_dict())
            return
        if not self._headers(store, resp, res, req):
            return
        start, end = self._range(req, res.size)
        if (start, end) != (0, res.size):
            resp.status = falcon.HTTP_206
            resp.set_header("Content-Range", f"bytes {start}-{end - 1}/{res.size}")
        resp.set_stream(open_range(store, res, start, end - start), end - start)

    def _range(self, req: falcon.Request, size: int) -> tuple[int, int]:
        """``[start, end)`` of the requested single range; 416 when none of it exists."""
        rng = req.range
        if rng is None:
            return 0, size
        first, last = rng
        if first < 0:  # the last -first bytes
            first, last = max(0, size + first), size - 1
        elif last < 0 or last >= size:
            last = size - 1
        if first >= size or first > last:
            raise falcon.HTTPRangeNotSatisfiable(size)
        return first, last + 1

    def _headers(
        self, store: Store, resp: falcon.Response, res: Resource, req: falcon.Request | None = None
    ) -> bool:
        """The object's headers; False (with 304 or 412 set) when a conditional request stops here.

        Reads (``req`` given) get the md5 ETag, computed once if unknown; write answers only report a
        known one, so a COPY stays free of any read whatever the size."""
        etag = store.hashmaps.md5(res) if req is not None else store.hashmaps.known_md5(res)
        stamp = res.object.created_at if res.object else res.created_at
        if etag:
            resp.set_header("ETag", etag)
        resp.set_header("X-Atoll-Id", res.id)
        resp.set_header("X-Timestamp", timestamp(stamp))
        resp.set_header("Last-Modified", http_date(stamp))
        resp.set_header("Accept-Ranges", "bytes")
        if res.object:
            resp.content_type = res.object.content_type
            set_meta_headers(resp, "Object", res.object.meta)
        if req is None or etag is None:
            return True
        return _conditions(req, resp, etag, stamp)


def _conditions(req: falcon.Request, resp: falcon.Response, etag: str, stamp: str) -> bool:
    match, none_match = req.if_match, req.if_none_match
    if match and not any(str(m).strip('"') == etag or m == "*" for m in match):
        resp.status = falcon.HTTP_412
        return False
    if none_match and any(str(m).strip('"') == etag or m == "*" for m in none_match):
        resp.status = falcon.HTTP_304
        return False
    since = req.get_header_as_datetime("If-Modified-Since")
    if since is not None and parse_stamp(stamp).replace(microsecond=0) <= since.replace(
        tzinfo=parse_stamp(stamp).tzinfo
    ):
        resp.status = falcon.HTTP_304
        return False
    return True


def _refuse_manifest(req: falcon.Request) -> None:
    """Segmented objects (a DLO's ``X-Object-Manifest``, an SLO's ``?multipart-manifest=put``) are not
    kept: stored as plain objects they would read back empty or as their manifest. One object may hold
    ``api.max_image_size`` (1 TiB by default, ``max_file_size`` in ``/info``), so the client can upload
    the object whole (``swift upload`` without ``--segment-size``)."""
    if req.get_header("X-Object-Manifest") is not None or req.get_param("multipart-manifest") == "put":
        raise InvalidInput(
            "segmented objects (X-Object-Manifest, multipart-manifest=put) are not supported: upload the "
            "object whole (swift upload without --segment-size; max_file_size in /info)"
        )
