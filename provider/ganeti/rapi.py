"""A small Ganeti RAPI client (``requests``): create an instance with an Atoll disk and follow its job.

TLS certificates are verified (against ``ca`` when given); the password is never logged or shown.
Ganeti's own error messages are passed on verbatim.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from provider.errors import AtollError

LOG = logging.getLogger(__name__)
FINAL = ("success", "error", "canceled")
MIB = 1 << 20


class RapiError(AtollError):
    """Ganeti (or the way to it) refused a request; the message is Ganeti's own."""

    message = "%(reason)s"


class JobFailed(AtollError):
    message = "job %(job)s %(status)s: %(reason)s"


@dataclass(frozen=True)
class LogEntry:
    serial: int
    message: str


@dataclass(frozen=True)
class InstanceRequest:
    """What ``create-instance`` asks Ganeti for: one ext disk of provider atoll cloned from ``image``."""

    name: str
    image: str
    size: int  # bytes
    os_type: str = "atoll+default"
    hostname: str | None = None
    ssh_keys: tuple[str, ...] = ()
    password: str | None = field(default=None, repr=False)
    node: str | None = None
    iallocator: str | None = None
    hypervisor: str | None = None
    memory: int | None = None  # bytes
    vcpus: int | None = None
    nics: tuple[Mapping[str, str], ...] = ()
    start: bool = True
    name_check: bool = True
    ip_check: bool = True

    def body(self) -> dict[str, Any]:
        osparams: dict[str, str] = {}
        if self.hostname:
            osparams["hostname"] = self.hostname
        if self.ssh_keys:
            osparams["auth_keys"] = "\n".join(self.ssh_keys)
        body: dict[str, Any] = {
            "__version__": 1,
            "mode": "create",
            "instance_name": self.name,
            "disk_template": "ext",
            "disks": [{"size": -(-self.size // MIB), "provider": "atoll", "origin": self.image}],
            "nics": [dict(n) for n in self.nics],
            "os_type": self.os_type,
            "osparams": osparams,
            "start": self.start,
            "name_check": self.name_check,
            "ip_check": self.ip_check and self.name_check,
        }
        if self.password is not None:
            body["osparams_secret"] = {"img_passwd": self.password}
        beparams: dict[str, int] = {}
        if self.memory is not None:
            beparams["memory"] = -(-self.memory // MIB)
        if self.vcpus is not None:
            beparams["vcpus"] = self.vcpus
        if beparams:
            body["beparams"] = beparams
        for key in ("hypervisor", "iallocator"):
            if getattr(self, key):
                body[key] = getattr(self, key)
        if self.node:
            body["pnode"] = self.node
        return body


def _error_text(response: requests.Response) -> str:
    """Ganeti's error body is JSON ``{code, message, explain}``; anything else is shown as it came."""
    try:
        data = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text.strip() or response.reason}"
    if isinstance(data, dict) and "message" in data:
        explain = data.get("explain")
        text = f"{data.get('code', response.status_code)} {data['message']}"
        return f"{text}: {explain}" if explain else text
    return f"HTTP {response.status_code}: {json.dumps(data)}"


def job_error(job: Mapping[str, Any]) -> str:
    """The failed opcode's result, verbatim: ``[error_type, [message, ecode]]`` → ``type: message``."""
    for status, result in zip(job.get("opstatus") or [], job.get("opresult") or [], strict=False):
        if status in ("error", "canceled"):
            if isinstance(result, list) and len(result) == 2 and isinstance(result[1], list) and result[1]:
                return f"{result[0]}: {result[1][0]}"
            return json.dumps(result)
    return f"job ended with status {job.get('status')}"


class RapiClient:
    def __init__(
        self,
        url: str,
        user: str | None = None,
        password: str | None = None,
        ca: str | None = None,
        verify: bool = True,
        timeout: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Content-Type"] = "application/json"
        if user is not None:
            self.session.auth = (user, password or "")
        # NOTE: passed on every request: a session-level verify is replaced by $REQUESTS_CA_BUNDLE.
        self.verify: bool | str = ca if (verify and ca) else verify
        self.timeout = timeout

    def request(
        self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        try:
            response = self.session.request(
                method,
                self.url + path,
                data=None if body is None else json.dumps(body),
                params=params,
                verify=self.verify,
                timeout=self.timeout,
            )
        except requests.exceptions.SSLError as e:
            raise RapiError(reason=f"TLS verification of {self.url} failed (give --ca): {e}") from e
        except requests.exceptions.RequestException as e:
            raise RapiError(reason=f"cannot reach the Ganeti RAPI at {self.url}: {e}") from e
        LOG.debug("%s %s -> %s", method, path, response.status_code)
        if response.status_code >= 400:
            raise RapiError(reason=_error_text(response))
        return response.json()

    def create_instance(self, req: InstanceRequest, dry_run: bool = False) -> int:
        params = {"dry-run": "1"} if dry_run else None
        return int(self.request("POST", "/2/instances", req.body(), params=params))

    def job(self, job_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/2/jobs/{job_id}")
        return result

    def follow(
        self,
        job_id: int,
        on_log: Callable[[LogEntry], None] | None = None,
        on_status: Callable[[str], None] | None = None,
        timeout: float = 3600.0,
    ) -> dict[str, Any]:
        """Long-poll ``/2/jobs/<id>/wait`` until the job ends; report log lines and status changes."""
        deadline = time.monotonic() + timeout
        info: Sequence[Any] | None = None
        serial: int | None = None
        status = ""
        while time.monotonic() < deadline:
            body = {"fields": ["status"], "previous_job_info": info, "previous_log_serial": serial}
            change = self.request("GET", f"/2/jobs/{job_id}/wait", body)
            if not change:  # nothing happened within the server's own timeout
                continue
            info = change["job_info"]
            for entry in change.get("log_entries") or []:
                serial = entry[0]
                if on_log is not None:
                    on_log(LogEntry(entry[0], str(entry[3])))
            if info and info[0] != status:
                status = info[0]
                if on_status is not None:
                    on_status(status)
            if status in FINAL:
                return self.job(job_id)
        raise RapiError(reason=f"job {job_id} did not finish within {timeout:.0f} s")

    def wait_success(self, job_id: int, **kwargs: Any) -> dict[str, Any]:
        job = self.follow(job_id, **kwargs)
        if job.get("status") != "success":
            raise JobFailed(job=job_id, status=job.get("status"), reason=job_error(job))
        return job
