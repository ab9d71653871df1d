"""A local HTTP server for web-download tests: files from a directory, redirects, a truncated body, a
body that stalls half-way until released."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Server:
    def __init__(self, root: Path, httpd: ThreadingHTTPServer) -> None:
        self.root = root
        self.httpd = httpd
        self.redirects: dict[str, str] = {}  # path -> Location
        self.requests: list[str] = []
        self.release = threading.Event()  # /stall/ bodies wait for it half-way

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


def _handler(server_ref: list[Server]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            server = server_ref[0]
            server.requests.append(self.path)
            if self.path in server.redirects:
                self.send_response(302)
                self.send_header("Location", server.redirects[self.path])
                self.end_headers()
                return
            if self.path.startswith("/stall/"):
                data = (server.root / self.path.removeprefix("/stall/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                server.release.wait(60)
                self.wfile.write(data[len(data) // 2 :])
                return
            if self.path.startswith("/truncated/"):
                data = (server.root / self.path.removeprefix("/truncated/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                return
            path = server.root / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    self.wfile.write(chunk)

    return Handler


@contextmanager
def serve(root: Path) -> Iterator[Server]:
    ref: list[Server] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ref))
    ref.append(Server(root, httpd))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield ref[0]
    finally:
        ref[0].release.set()
        httpd.shutdown()
        httpd.server_close()
