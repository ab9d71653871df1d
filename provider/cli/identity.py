"""``atoll serve`` and the identity commands: ``atoll project …``, ``atoll user …``."""

from __future__ import annotations

import sys

import click

from provider.cli.common import Context, emit, pass_ctx, print_table
from provider.errors import UsageError


@click.command(
    "serve",
    epilog="""\b
Examples:
  atoll serve                               # 127.0.0.1:9292, or api.bind in atoll.yaml
  atoll serve --bind 0.0.0.0:9292 --workers 4
""",
)
@click.option("--bind", default=None, help="HOST:PORT or unix:PATH (default: api.bind).")
@click.option("--workers", type=int, default=None, help="Worker processes (default: api.workers).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@pass_ctx
def serve_cmd(obj: Context, bind: str | None, workers: int | None, log_level: str) -> None:
    """Serve the Identity (Keystone v3), Image (Glance v2), Object (Swift) and Volume (Cinder v3) APIs
    under gunicorn."""
    import dataclasses

    from provider.api.server import serve

    config = obj.config
    api = config.api
    if bind is not None:
        api = dataclasses.replace(api, bind=bind)
    if workers is not None:
        api = dataclasses.replace(api, workers=workers)
    config = dataclasses.replace(config, api=api)
    obj.store.init()  # create or migrate the catalog once, before the workers start
    obj.store.catalog.analyze()  # fresh planner statistics for the listings the workers will serve
    serve(config, log_level)


@click.group("project")
def project_group() -> None:
    """Projects: the owners of images and volumes (the CLI's OS user is the project of its name)."""


@project_group.command("create")
@click.argument("name")
@click.option("--description", default="", help="Free text.")
@pass_ctx
def project_create(obj: Context, name: str, description: str) -> None:
    """Create the project NAME (its id is its name)."""
    proj = obj.store.identity.create_project(name, description)
    emit(obj, proj.to_dict(), lambda: click.echo(f"project {proj.name} created"))


@project_group.command("list")
@pass_ctx
def project_list(obj: Context) -> None:
    """List the projects."""
    items = obj.store.identity.list_projects()
    emit(
        obj,
        [p.to_dict() for p in items],
        lambda: print_table(["ID", "NAME", "ENABLED"], [[p.id, p.name, p.enabled] for p in items]),
    )


@click.group("user")
def user_group() -> None:
    """API users: a password and roles (admin, member, reader) on projects."""


def _read_password(path: str) -> str:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise UsageError("cannot read the password file %(path)s: %(e)s", path=path, e=e.strerror) from e
    return text.rstrip("\r\n")


@user_group.command(
    "create",
    epilog="""\b
Examples:
  atoll project create web
  atoll user create alice --project web --role member --password-file alice.pw
""",
)
@click.argument("name")
@click.option("--project", required=True, help="The project the user gets a role on (its default).")
@click.option("--role", type=click.Choice(["member", "admin", "reader"]), default="member", show_default=True)
@click.option("--password-file", required=True, metavar="F", help="File holding the password ('-': stdin).")
@pass_ctx
def user_create(obj: Context, name: str, project: str, role: str, password_file: str) -> None:
    """Create the user NAME with ROLE on PROJECT (the password is stored as an argon2 hash)."""
    user = obj.store.identity.create_user(name, _read_password(password_file), project, role)
    emit(obj, user.to_dict(), lambda: click.echo(f"user {user.name} created ({role} on {project})"))


@user_group.command("grant")
@click.argument("name")
@click.option("--project", required=True)
@click.option("--role", type=click.Choice(["member", "admin", "reader"]), required=True)
@pass_ctx
def user_grant(obj: Context, name: str, project: str, role: str) -> None:
    """Give the user NAME a ROLE on another PROJECT."""
    obj.store.identity.grant(name, project, role)
    emit(obj, {"user": name, "project": project, "role": role}, lambda: click.echo("granted"))


@user_group.command("list")
@pass_ctx
def user_list(obj: Context) -> None:
    """List the users and their roles."""
    items = obj.store.identity.list_users()
    rows = [[u.id, u.name, ", ".join(f"{r}@{p}" for p, r in u.roles) or "-"] for u in items]
    emit(obj, [u.to_dict() for u in items], lambda: print_table(["ID", "NAME", "ROLES"], rows))


@user_group.command("delete")
@click.argument("name")
@pass_ctx
def user_delete(obj: Context, name: str) -> None:
    """Delete the user NAME and revoke its tokens."""
    obj.store.identity.delete_user(name)
    emit(obj, {"deleted": name}, lambda: click.echo(f"user {name} deleted"))


def install(cli: click.Group) -> None:
    cli.add_command(serve_cmd)
    cli.add_command(project_group)
    cli.add_command(user_group)
