"""A small QMP client over a unix socket (stdlib only): commands, errors, and block-job waiting."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from provider.errors import DataPathError

LOG = logging.getLogger(__name__)


class QmpError(DataPathError):
    message = "QMP %(command)s failed: %(desc)s"


class Qmp:
    """One QMP session: ``with Qmp(path) as q: q.execute("query-block-exports")``."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._sock: socket.socket | None = None
        self._buf = b""

    def __enter__(self) -> Qmp:
        self.connect()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError as e:
            sock.close()
            raise DataPathError(reason=f"cannot reach the daemon's monitor {self.path}: {e}") from e
        self._sock = sock
        greeting = self._read()
        if "QMP" not in greeting:
            raise DataPathError(reason=f"{self.path} does not speak QMP")
        self.execute("qmp_capabilities")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _read(self) -> dict[str, Any]:
        assert self._sock is not None
        while b"\n" not in self._buf:
            try:
                chunk = self._sock.recv(65536)
            except OSError as e:
                raise DataPathError(reason=f"QMP connection {self.path}: {e}") from e
            if not chunk:
                raise DataPathError(reason=f"QMP connection {self.path} closed by the daemon")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        msg: dict[str, Any] = json.loads(line)
        return msg

    def execute(self, command: str, **arguments: Any) -> Any:
        """Run ``command`` and return its ``return`` value; raise QmpError with QEMU's description."""
        if self._sock is None:
            raise DataPathError(reason="QMP session is closed")
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        LOG.debug("qmp %s %s", command, arguments)
        try:
            self._sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as e:
            raise DataPathError(reason=f"QMP connection {self.path}: {e}") from e
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise QmpError(command=command, desc=reply["error"].get("desc", reply["error"]))
            return reply.get("return")

    def wait_job(self, job_id: str, timeout: float = 3600.0) -> None:
        """Wait until job ``job_id`` (started with auto-dismiss off) concludes; dismiss it; raise on error."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            jobs = {j["id"]: j for j in self.execute("query-jobs")}
            job = jobs.get(job_id)
            if job is None:
                raise DataPathError(reason=f"block job {job_id} vanished")
            if job["status"] == "concluded":
                self.execute("job-dismiss", id=job_id)
                if job.get("error"):
                    raise QmpError(command=job["type"], desc=job["error"])
                return
            if time.monotonic() > deadline:
                self.execute("job-cancel", id=job_id)
                raise DataPathError(reason=f"block job {job_id} did not finish in {timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
