"""Swift temporary URLs: a request without a token that carries ``temp_url_sig`` and ``temp_url_expires``
acts on one object of an account (or, with ``temp_url_prefix``, on the objects under a prefix), with one
method, until a time, optionally from one address range (``temp_url_ip_range``).

The signature is the HMAC (SHA-1, SHA-256 or SHA-512) of ``METHOD\\nEXPIRES\\nPATH`` (``ip=RANGE\\n`` first
when restricted; ``prefix:`` before a prefix's path) under a key that the account's owner set as
``X-Account-Meta-Temp-URL-Key`` or ``…-Key-2`` (two, so that keys rotate without breaking the URLs out).
``swift tempurl`` and swiftclient's ``generate_temp_url`` make them. The request then acts as a member
of the account's project; a signed PUT uploads bytes only (no copy from elsewhere, no hashmap), and a GET
answers with ``Content-Disposition`` (``attachment`` by default, ``inline`` or ``filename=`` on request).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import falcon

from provider.api.swift_http import flag
from provider.errors import AtollError, AuthenticationFailed, InvalidInput
from provider.services import Caller

METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")
DIGESTS: dict[str, Callable[..., Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
}
_HEX_LENGTHS = {40: "sha1", 64: "sha256", 128: "sha512"}
KEYS = ("temp-url-key", "temp-url-key-2")  # account metadata, as stored (lower case)
# What a signed request may not ask for: the signature covers one path and one method, not a copy of
# another object into it, or the assembly of blocks named by hash.
REFUSED_HEADERS = ("X-Copy-From", "X-Copy-From-Account", "Destination", "Destination-Account")
AccountKeys = Callable[[str], list[str]]


def authorize(req: falcon.Request, params: dict[str, Any], keys: AccountKeys) -> Caller | None:
    """The caller a signed request acts as (a member of the account's project), or 401 saying why not;
    None for a request that is not signed."""
    if "temp_url_sig" not in req.params and "temp_url_expires" not in req.params:
        return None
    account, container, name = params["account"], params["container"], params["name"]
    if req.method not in METHODS:
        raise _invalid(f"{req.method} is not a method a temporary URL allows")
    expires = _expires(req.get_param("temp_url_expires") or "")
    if expires < time.time():
        raise _invalid("it has expired")
    path = _signed_path(req, account, container, name)
    ip_range = req.get_param("temp_url_ip_range")
    lead = ""
    if ip_range is not None:
        _check_address(req.remote_addr, ip_range)
        lead = f"ip={ip_range}\n"  # the address range is signed first
    digest, sig = _signature(req.get_param("temp_url_sig") or "")
    secrets = keys(account)
    if not secrets:
        raise _invalid(f"account AUTH_{account} has no Temp-URL-Key")
    methods = ("HEAD", "GET", "PUT", "POST") if req.method == "HEAD" else (req.method,)
    for secret in secrets:
        for method in methods:
            text = f"{lead}{method}\n{expires}\n{path}"
            if hmac.compare_digest(hmac.new(secret.encode(), text.encode(), digest).digest(), sig):
                _refuse_extras(req)
                req.context.tempurl_name = name
                req.context.finish = content_disposition
                return Caller(name=account, roles=("member",))
    raise _invalid("the signature does not match this method, path and time")


def content_disposition(req: falcon.Request, resp: falcon.Response) -> None:
    """After a signed GET/HEAD: ``attachment`` with the object's base name, or the asked filename, or
    ``inline``."""
    name = req.context.get("tempurl_name")
    if name is None or req.method not in ("GET", "HEAD") or not 200 <= resp.status_code < 300:
        return
    if "inline" in req.params and "filename" not in req.params:
        resp.set_header("Content-Disposition", "inline")
        return
    filename = req.get_param("filename") or name.rsplit("/", 1)[-1]
    kind = "inline" if "inline" in req.params else "attachment"
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    resp.set_header(
        "Content-Disposition", f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
    )


def _invalid(why: str) -> AtollError:
    return AuthenticationFailed(reason=f"temporary URL not valid: {why}")


def _expires(text: str) -> int:
    """Seconds since the epoch, or an ISO 8601 UTC time (``2026-12-31T23:59:59Z``)."""
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise _invalid("temp_url_expires is not seconds since the epoch or YYYY-MM-DDThh:mm:ssZ") from None
    return int(when.timestamp())


def _signed_path(req: falcon.Request, account: str, container: str, name: str) -> str:
    prefix = req.get_param("temp_url_prefix")
    if prefix is None:
        return req.path
    if not name.startswith(prefix):
        raise _invalid(f"the object is not under the prefix {prefix!r}")
    return f"prefix:/v1/AUTH_{account}/{container}/{prefix}"


def _check_address(address: str | None, ip_range: str) -> None:
    try:
        network = ipaddress.ip_network(ip_range, strict=False)
        inside = address is not None and ipaddress.ip_address(address) in network
    except ValueError:
        raise _invalid(f"temp_url_ip_range {ip_range!r} is not an address or network") from None
    if not inside:
        raise _invalid("it is restricted to other addresses")


def _signature(text: str) -> tuple[Callable[..., Any], bytes]:
    """``temp_url_sig``: hex (the digest follows from its length) or ``DIGEST:base64``."""
    algo, sep, encoded = text.partition(":")
    try:
        if sep:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        else:
            algo, raw = _HEX_LENGTHS.get(len(text), ""), bytes.fromhex(text)
    except (ValueError, binascii.Error):
        raise _invalid("temp_url_sig is malformed") from None
    if algo not in DIGESTS:
        raise _invalid(f"temp_url_sig uses no digest this server accepts ({', '.join(DIGESTS)})")
    return DIGESTS[algo], raw


def _refuse_extras(req: falcon.Request) -> None:
    for header in REFUSED_HEADERS:
        if req.get_header(header) is not None:
            raise InvalidInput("a temporary URL does not allow %(h)s", h=header)
    if flag(req, "hashmap") or flag(req, "update"):
        raise InvalidInput("a temporary URL uploads bytes: no ?hashmap or ?update")
