"""A fake Ganeti RAPI over HTTPS on 127.0.0.1: enough of ``/2/instances`` and ``/2/jobs`` for the client."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class FakeRapi:
    """Scripted answers: ``job`` is the final job; ``waits`` the successive ``/wait`` replies."""

    job: dict[str, Any]
    waits: list[Any]
    create_error: tuple[int, dict[str, Any]] | None = None
    requests: list[tuple[str, str, Any, str | None]] = field(default_factory=list)
    url: str = ""


def make_cert(directory: Path) -> tuple[Path, Path]:
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=rapi.test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


@contextmanager
def serve(fake: FakeRapi, key: Path, cert: Path) -> Iterator[FakeRapi]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, data: Any) -> None:
            body = json.dumps(data).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length)) if length else None

        def do_POST(self) -> None:
            fake.requests.append(("POST", self.path, self._body(), self.headers.get("Authorization")))
            if fake.create_error:
                self._reply(*fake.create_error)
            else:
                self._reply(200, fake.job["id"])

        def do_GET(self) -> None:
            fake.requests.append(("GET", self.path, self._body(), self.headers.get("Authorization")))
            if self.path.endswith("/wait"):
                self._reply(
                    200,
                    fake.waits.pop(0)
                    if fake.waits
                    else {"job_info": [fake.job["status"]], "log_entries": []},
                )
            else:
                self._reply(200, fake.job)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"https://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
