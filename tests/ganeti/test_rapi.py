"""The RAPI client and ``atoll ganeti create-instance`` against a fake RAPI: the request body, the job
followed to its end, Ganeti's errors shown verbatim, certificates verified by default."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provider.ganeti import rapi
from tests.conftest import StoreEnv
from tests.ganeti.conftest import last_line
from tests.ganeti.fake_rapi import FakeRapi, make_cert, serve
from tests.helpers import need_tools

ERROR_JOB = {
    "id": 8,
    "status": "error",
    "opstatus": ["error"],
    "opresult": [
        [
            "OpExecError",
            [
                "Could not create disk 0: External storage's create script failed (exited with exit code 1), "
                "last lines of output:\natoll create: error: source 'nope' not found",
                "environment_error",
            ],
        ]
    ],
}


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    need_tools("openssl")
    return make_cert(tmp_path_factory.mktemp("rapi-cert"))


@pytest.fixture
def ok_rapi(cert: tuple[Path, Path]) -> Iterator[FakeRapi]:
    job = {"id": 7, "status": "success", "opstatus": ["success"], "opresult": [["node1"]]}
    waits = [
        None,
        {"job_info": ["running"], "log_entries": [[1, [0, 0], "message", "* creating instance disks..."]]},
        {
            "job_info": ["success"],
            "log_entries": [[2, [0, 0], "message", "* running the OS create scripts..."]],
        },
    ]
    with serve(FakeRapi(job, waits), *cert) as fake:
        yield fake


def test_request_body_carries_an_atoll_disk_and_secret_password() -> None:
    req = rapi.InstanceRequest(
        "web1",
        "debian-12",
        10 << 30,
        hostname="web",
        ssh_keys=("ssh-ed25519 AAAA k",),
        password="pw",
        node="node1",
        memory=512 << 20,
        vcpus=2,
        name_check=False,
    )
    body = req.body()
    assert body["disks"] == [{"size": 10240, "provider": "atoll", "origin": "debian-12"}]
    assert body["disk_template"] == "ext" and body["os_type"] == "atoll+default"
    assert body["osparams"] == {"hostname": "web", "auth_keys": "ssh-ed25519 AAAA k"}
    assert body["osparams_secret"] == {"img_passwd": "pw"}
    assert body["beparams"] == {"memory": 512, "vcpus": 2}
    assert (body["pnode"], body["name_check"], body["ip_check"]) == ("node1", False, False)
    assert "pw" not in repr(req)


def test_client_follows_the_job(ok_rapi: FakeRapi, cert: tuple[Path, Path]) -> None:
    client = rapi.RapiClient(ok_rapi.url, "u", "p", ca=str(cert[1]))
    job_id = client.create_instance(rapi.InstanceRequest("web1", "img", 1 << 30))
    seen: list[str] = []
    job = client.wait_success(job_id, on_log=lambda e: seen.append(e.message), on_status=seen.append)
    assert job["status"] == "success"
    assert seen == [
        "* creating instance disks...",
        "running",
        "* running the OS create scripts...",
        "success",
    ]
    assert ok_rapi.requests[0][3] and ok_rapi.requests[0][3].startswith("Basic ")
    wait_bodies = [body for method, path, body, _ in ok_rapi.requests if path.endswith("/wait")]
    assert wait_bodies[-1]["previous_log_serial"] == 1


def test_certificate_is_verified_by_default(ok_rapi: FakeRapi) -> None:
    with pytest.raises(rapi.RapiError, match=r"TLS verification of .* failed"):
        rapi.RapiClient(ok_rapi.url).create_instance(rapi.InstanceRequest("web1", "img", 1 << 30))


def test_cli_reports_progress_and_outcome(
    ok_rapi: FakeRapi, cert: tuple[Path, Path], plain_env: StoreEnv, tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text("secret-rapi-pw\n")
    (tmp_path / "key.pub").write_text("ssh-ed25519 AAAAC3 me\n")
    proc = plain_env.cli(
        "ganeti",
        "create-instance",
        "web1",
        "--image",
        "debian-12",
        "--size",
        "10G",
        "--hostname",
        "web",
        "--ssh-key",
        str(tmp_path / "key.pub"),
        "--cluster",
        ok_rapi.url,
        "--user",
        "ops",
        "--password-file",
        str(tmp_path / "pw"),
        "--ca",
        str(cert[1]),
        "--no-name-check",
    )
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert out.strip().startswith("instance web1 created by job 7 in ")
    assert "submitted job 7" in err and "* running the OS create scripts..." in err and "job success" in err
    assert "secret-rapi-pw" not in out + err
    body = ok_rapi.requests[0][2]
    assert body["osparams"]["auth_keys"] == "ssh-ed25519 AAAAC3 me" and body["disks"][0]["size"] == 10240


def test_cli_shows_ganeti_errors_verbatim(cert: tuple[Path, Path], plain_env: StoreEnv) -> None:
    with serve(FakeRapi(ERROR_JOB, []), *cert) as fake:
        proc = plain_env.cli(
            "ganeti",
            "create-instance",
            "web1",
            "--image",
            "nope",
            "--size",
            "1G",
            "--cluster",
            fake.url,
            "--ca",
            str(cert[1]),
            check=False,
        )
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert "atoll: error: job 8 error: OpExecError: Could not create disk 0: External storage's create" in err
    assert last_line(err) == "atoll create: error: source 'nope' not found"


def test_cli_shows_http_errors_verbatim(cert: tuple[Path, Path], plain_env: StoreEnv) -> None:
    refusal = (400, {"code": 400, "message": "Bad Request", "explain": "Missing required parameter 'disks'"})
    with serve(FakeRapi(ERROR_JOB, [], create_error=refusal), *cert) as fake:
        proc = plain_env.cli(
            "ganeti",
            "create-instance",
            "web1",
            "--image",
            "x",
            "--size",
            "1G",
            "--cluster",
            fake.url,
            "--ca",
            str(cert[1]),
            check=False,
        )
    assert last_line(proc.stderr.decode()) == (
        "atoll: error: 400 Bad Request: Missing required parameter 'disks'"
    )
