"""Fetch an image over HTTP(S) without letting the URL reach what the server can but the user should not.

Every hop (the URL and each redirect) is resolved once, every address it resolves to is checked
(loopback, private, link-local, multicast and reserved ranges are refused unless ``allow_networks``
names them), and the connection goes to the checked address, so DNS cannot answer differently the
second time. The body is bounded by ``max_size``; a short body is an error, never an image.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO
from urllib.parse import SplitResult, urljoin, urlsplit

from provider.errors import AtollError, InvalidInput
from provider.utils.sizes import format_size

LOG = logging.getLogger(__name__)

CHUNK = 1 << 20
_REDIRECTS = (301, 302, 303, 307, 308)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchRefused(InvalidInput):
    message = "download refused: %(reason)s"


class FetchFailed(AtollError):
    message = "download failed: %(reason)s"


@dataclass(frozen=True)
class FetchPolicy:
    allow_networks: tuple[str, ...] = ()
    schemes: tuple[str, ...] = ("http", "https")
    max_size: int = 64 << 30
    timeout: float = 60.0
    max_redirects: int = 5


def shown(url: str) -> str:
    """``url`` as it may appear in messages and logs: no credentials, no query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?…" if parts.query else "")


def check_url(url: str, policy: FetchPolicy) -> tuple[SplitResult, Address]:
    """Parse ``url`` and resolve its host; return it with the one address to connect to.

    :raises FetchRefused: for another scheme, credentials in the URL, or a refused address.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise FetchRefused(reason=f"{url!r} is not a valid URL: {e}") from None
    if parts.scheme not in policy.schemes or not parts.hostname:
        raise FetchRefused(
            reason=f"{shown(url)}: only {', '.join(policy.schemes)} URLs with a host are taken"
        )
    if parts.username or parts.password:
        raise FetchRefused(reason=f"{shown(url)}: credentials in URLs are not accepted")
    addresses = _resolve(parts.hostname, port)
    for addr in addresses:
        if not _allowed(addr, policy):
            raise FetchRefused(
                reason=f"{shown(url)} resolves to {addr}, a loopback, private or reserved address "
                "(imports.allow_networks may allow it)"
            )
    return parts, addresses[0]


def _resolve(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise FetchFailed(reason=f"cannot resolve {host}: {e.strerror}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def _allowed(addr: Address, policy: FetchPolicy) -> bool:
    if any(addr in ipaddress.ip_network(net, strict=False) for net in policy.allow_networks):
        return True
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return _allowed(addr.ipv4_mapped, policy)
    return addr.is_global and not addr.is_multicast


def fetch(
    url: str, out: IO[bytes], policy: FetchPolicy, progress: Callable[[int, int | None], None] | None = None
) -> int:
    """Write the body at ``url`` (following checked redirects) to ``out``; return its length.

    ``progress(done, total)`` is called per chunk (total is None without a Content-Length).

    :raises FetchRefused: a refused address or scheme (on any hop), too many redirects, too large.
    :raises FetchFailed: network errors, an HTTP error status, a body shorter than announced.
    """
    for _ in range(policy.max_redirects + 1):
        parts, addr = check_url(url, policy)
        conn = _connection(parts, addr, policy.timeout)
        try:
            response = _get(conn, parts)
            if response.status in _REDIRECTS:
                target = response.getheader("Location")
                if not target:
                    raise FetchFailed(reason=f"{shown(url)} redirects without a Location")
                LOG.info("%s redirects to %s", shown(url), shown(urljoin(url, target)))
                url = urljoin(url, target)
                continue
            if response.status != 200:
                raise FetchFailed(reason=f"{shown(url)}: HTTP {response.status} {response.reason}")
            return _copy(response, out, policy, url, progress)
        except (OSError, http.client.HTTPException) as e:
            raise FetchFailed(reason=f"{shown(url)}: {e}") from None
        finally:
            conn.close()
    raise FetchRefused(reason=f"more than {policy.max_redirects} redirects")


def _connection(parts: SplitResult, addr: Address, timeout: float) -> http.client.HTTPConnection:
    """A connection to ``addr`` (already checked) that speaks to ``parts.hostname`` (Host, SNI)."""
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    sock = socket.create_connection((str(addr), port), timeout=timeout)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        conn.sock = context.wrap_socket(sock, server_hostname=host)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.sock = sock
    return conn


def _get(conn: http.client.HTTPConnection, parts: SplitResult) -> http.client.HTTPResponse:
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn.request("GET", path, headers={"User-Agent": "atoll-image-import", "Accept-Encoding": "identity"})
    return conn.getresponse()


def _copy(
    response: http.client.HTTPResponse,
    out: IO[bytes],
    policy: FetchPolicy,
    url: str,
    progress: Callable[[int, int | None], None] | None,
) -> int:
    length = response.getheader("Content-Length")
    total = int(length) if length and length.isdigit() else None
    if total is not None and total > policy.max_size:
        raise FetchRefused(
            reason=f"{shown(url)} is {format_size(total)}, above the limit of {format_size(policy.max_size)} "
            "(imports.max_download_size)"
        )
    done = 0
    while chunk := response.read(CHUNK):
        done += len(chunk)
        if done > policy.max_size:
            raise FetchRefused(
                reason=f"{shown(url)} sent more than {format_size(policy.max_size)} "
                "(imports.max_download_size)"
            )
        out.write(chunk)
        if progress:
            progress(done, total)
    if total is not None and done != total:
        raise FetchFailed(reason=f"{shown(url)}: the connection closed after {done} of {total} bytes")
    return done
