"""The click options the CLI attaches, and params_from_options (no plaintext password on the command line)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from customization.errors import ParameterError
from provider.cli.customization_options import customization_options, params_from_options

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxU9oG3rSSjtyBBVJPXtZxv6g7mvhJkCz5E2sPqYQ8K test@host"


@click.command()
@click.argument("name")
@customization_options
def command(name: str, **kw: object) -> None:
    params = params_from_options(name=name, **kw)
    click.echo(
        json.dumps(
            {
                "hostname": params.hostname,
                "password": params.password.reveal() if params.password else None,
                "hash": params.password_hash,
                "keys": list(params.ssh_keys),
                "files": [[f.path, f.content.decode(), f.owner, f.group, oct(f.mode)] for f in params.files],
                "users": params.users,
                "repr": repr(params),
            }
        )
    )


def test_all_options(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("pa ss:word\nignored second line\n")
    (tmp_path / "keys").write_text(f"# comment\n{KEY}\n\n{KEY}\n")
    (tmp_path / "motd").write_text("hello\n")
    result = CliRunner().invoke(
        command,
        ["vol1", "--hostname", "vm1", "--password-file", str(tmp_path / "pw"),
         "--ssh-key", str(tmp_path / "keys"), "--file", f"/etc/motd={tmp_path / 'motd'}:user:adm:0644",
         "--file", f"/etc/x={tmp_path / 'motd'}", "--users", "root user"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["hostname"] == "vm1"
    assert out["password"] == "pa ss:word"
    assert "pa ss:word" not in out["repr"]
    assert out["keys"] == [KEY]
    assert out["files"] == [
        ["/etc/motd", "hello\n", "user", "adm", "0o644"],
        ["/etc/x", "hello\n", "root", "root", "0o440"],
    ]
    assert out["users"] == ["root", "user"]


def test_password_from_stdin() -> None:
    result = CliRunner().invoke(command, ["vol1", "--password-file", "-"], input="from-stdin\n")
    assert json.loads(result.output)["password"] == "from-stdin"


def test_no_plaintext_password_option() -> None:
    result = CliRunner().invoke(command, ["vol1", "--password", "secret"])
    assert result.exit_code == 2
    assert "No such option '--password'" in result.output


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("")
    (tmp_path / "notakey").write_text("hello\n")
    with pytest.raises(ParameterError, match="password file is empty"):
        params_from_options(password_file=str(tmp_path / "empty"))
    with pytest.raises(ParameterError, match="not an SSH public key"):
        params_from_options(ssh_keys=(str(tmp_path / "notakey"),))
    with pytest.raises(ParameterError, match="expected GUEST_PATH=LOCAL"):
        params_from_options(files=("/etc/motd",))
    with pytest.raises(ParameterError, match="cannot read"):
        params_from_options(files=(f"/etc/motd={tmp_path / 'missing'}",))
    with pytest.raises(ParameterError, match="either a password or a password hash"):
        (tmp_path / "pw").write_text("x\n")
        params_from_options(password_file=str(tmp_path / "pw"), password_hash="$6$a$b")
