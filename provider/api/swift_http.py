"""What the Swift handlers share: query flags, metadata headers, dates, listings and object streams."""

from __future__ import annotations

import datetime as dt
import email.utils
import io
from typing import IO, Any, cast
from xml.etree import ElementTree as ET

import falcon
import orjson

from provider.api.body import fast_body
from provider.errors import InvalidInput, PermissionDenied
from provider.services import Caller
from provider.services.containers import MAX_LISTING, Page

CHUNK = 4 << 20


def flag(req: falcon.Request, name: str) -> bool:
    """Is ``name`` in the query string, with or without a value (``?hashmap``, ``?update``)?"""
    return any(part.split("=", 1)[0] == name for part in req.query_string.split("&"))


def caller(req: falcon.Request) -> Caller:
    found: Caller = req.context.caller
    return found


def require_owner(req: falcon.Request, account: str) -> None:
    """Writes go to the caller's own account only (admins excepted)."""
    who = caller(req)
    if account != who.name and not who.admin:
        raise PermissionDenied(reason=f"account AUTH_{account} is not your project's")


def meta_headers(req: falcon.Request, kind: str) -> tuple[dict[str, str], list[str]]:
    """``X-<kind>-Meta-K: V`` → set, ``X-Remove-<kind>-Meta-K`` (or an empty value) → unset; keys in
    lower case, as HTTP header names are case-insensitive."""
    set_, unset = {}, []
    prefix, remove = f"X-{kind}-META-".upper(), f"X-REMOVE-{kind}-META-".upper()
    for header, value in req.headers.items():
        header = header.upper()
        if header.startswith(prefix):
            key = header[len(prefix) :].lower()
            if value == "":
                unset.append(key)
            else:
                set_[key] = value
        elif header.startswith(remove):
            unset.append(header[len(remove) :].lower())
    return set_, unset


def set_meta_headers(resp: falcon.Response, kind: str, meta: dict[str, str]) -> None:
    for key, value in meta.items():
        resp.set_header(f"X-{kind}-Meta-{key}", value)


def http_date(stamp: str) -> str:
    if not stamp:
        return email.utils.formatdate(usegmt=True)
    return email.utils.format_datetime(parse_stamp(stamp), usegmt=True)


def parse_stamp(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def timestamp(stamp: str) -> str:
    return f"{parse_stamp(stamp).timestamp():.5f}" if stamp else "0"


def page(req: falcon.Request) -> Page:
    limit = req.get_param_as_int("limit")
    return Page(
        prefix=req.get_param("prefix") or "",
        delimiter=req.get_param("delimiter") or "",
        marker=req.get_param("marker") or "",
        end_marker=req.get_param("end_marker") or "",
        limit=MAX_LISTING if limit is None else limit,
    )


def listing_format(req: falcon.Request) -> str:
    fmt = (req.get_param("format") or "").lower()
    if not fmt:
        accept = req.accept or ""
        fmt = "json" if "application/json" in accept else "xml" if "xml" in accept else "plain"
    if fmt not in ("json", "xml", "plain"):
        raise InvalidInput("format must be json, xml or plain, not %(fmt)r", fmt=fmt)
    return fmt


def send_listing(
    resp: falcon.Response, fmt: str, root: tuple[str, str], items: list[dict[str, Any]], key: str
) -> None:
    """A listing as Swift sends it: names one a line, a JSON list, or XML (``root`` = tag, name)."""
    if fmt == "json":
        resp.content_type = "application/json; charset=utf-8"
        resp.data = orjson.dumps(items)
    elif fmt == "xml":
        top = ET.Element(root[0], name=root[1])
        for item in items:
            if "subdir" in item:
                sub = ET.SubElement(top, "subdir", name=item["subdir"])
                ET.SubElement(sub, "name").text = item["subdir"]
                continue
            node = ET.SubElement(top, key)
            for k, v in item.items():
                ET.SubElement(node, k).text = str(v)
        resp.content_type = "application/xml; charset=utf-8"
        resp.data = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(top)
    else:
        names = [item.get("subdir") or item["name"] for item in items]
        resp.content_type = "text/plain; charset=utf-8"
        resp.data = "".join(f"{n}\n" for n in names).encode()
        if not names:
            resp.status = falcon.HTTP_204


def request_body(req: falcon.Request) -> IO[bytes]:
    """The body as a stream: bounded by Content-Length, or the server's de-chunked input."""
    if req.content_length is not None:
        return fast_body(req) or cast(IO[bytes], req.bounded_stream)
    if "chunked" in (req.get_header("Transfer-Encoding") or "").lower():
        return cast(IO[bytes], req.stream)
    return io.BytesIO(b"")
