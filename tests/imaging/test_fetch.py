"""web-download's fetcher against a real local HTTP server: addresses checked on every hop, sizes bounded."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from provider.imaging.fetch import FetchFailed, FetchPolicy, FetchRefused, check_url, fetch, shown
from tests.imaging.httpd import Server, serve

ALLOW = FetchPolicy(allow_networks=("127.0.0.1/32",), max_size=1 << 20)


@pytest.fixture
def httpd(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "disk.img").write_bytes(b"x" * 300_000)
    with serve(tmp_path) as server:
        yield server


def test_fetch_allowed_loopback(httpd: Server) -> None:
    out = io.BytesIO()
    seen: list[tuple[int, int | None]] = []
    assert fetch(f"{httpd.url}/disk.img", out, ALLOW, lambda d, t: seen.append((d, t))) == 300_000
    assert out.getvalue() == b"x" * 300_000
    assert seen[-1] == (300_000, 300_000)


def test_loopback_refused_unless_allowed(httpd: Server) -> None:
    with pytest.raises(
        FetchRefused, match=r"resolves to 127\.0\.0\.1, a loopback, private or reserved address"
    ):
        fetch(f"{httpd.url}/disk.img", io.BytesIO(), FetchPolicy())
    assert httpd.requests == []  # refused before connecting


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/x", "http://127.0.0.2/x", "http://[::1]/x"],
)
def test_redirect_to_refused_address(httpd: Server, target: str) -> None:
    httpd.redirects["/hop"] = target
    out = io.BytesIO()
    with pytest.raises(FetchRefused, match="a loopback, private or reserved address"):
        fetch(f"{httpd.url}/hop", out, ALLOW)
    assert out.getvalue() == b""
    assert httpd.requests == ["/hop"]


def test_redirects_followed_and_bounded(httpd: Server) -> None:
    httpd.redirects["/a"] = "/b"
    httpd.redirects["/b"] = f"{httpd.url}/disk.img"
    assert fetch(f"{httpd.url}/a", io.BytesIO(), ALLOW) == 300_000
    httpd.redirects["/loop"] = "/loop"
    with pytest.raises(FetchRefused, match="more than 5 redirects"):
        fetch(f"{httpd.url}/loop", io.BytesIO(), ALLOW)


def test_size_limit_and_truncated_body(httpd: Server) -> None:
    small = FetchPolicy(allow_networks=("127.0.0.1/32",), max_size=100_000)
    with pytest.raises(FetchRefused, match=r"is 293\.0 KiB, above the limit of 97\.7 KiB"):
        fetch(f"{httpd.url}/disk.img", io.BytesIO(), small)
    with pytest.raises(FetchFailed):
        fetch(f"{httpd.url}/truncated/disk.img", io.BytesIO(), ALLOW)
    with pytest.raises(FetchFailed, match="HTTP 404"):
        fetch(f"{httpd.url}/missing", io.BytesIO(), ALLOW)


@pytest.mark.parametrize(
    "url, message",
    [
        ("file:///etc/shadow", "only http, https URLs with a host are taken"),
        ("ftp://example.org/x", "only http, https URLs with a host are taken"),
        ("http://user:secret@example.org/x", "credentials in URLs are not accepted"),
        ("http://example.org:99999/x", "is not a valid URL"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(FetchRefused, match=message) as err:
        check_url(url, FetchPolicy())
    assert "secret" not in str(err.value)


def test_shown_hides_secrets() -> None:
    assert shown("https://u:p@example.org:8443/a/b?sig=abc") == "https://example.org:8443/a/b?…"
