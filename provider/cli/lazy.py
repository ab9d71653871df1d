"""A click group that imports a subcommand's module only when that subcommand runs.

``atoll --version`` and ``atoll --help`` then start without the catalog (SQLAlchemy), the HTTP client
(requests) or the customization engine: ``--help`` lists the commands from the table below, and
tests/unit/test_cli_lazy.py checks that each summary still matches the command's own help.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import click


class Lazy(NamedTuple):
    module: str  # its install(cli) adds the command to the group
    summary: str  # the first line of the command's help, shown by ``atoll --help``


COMMANDS: dict[str, Lazy] = {
    "object": Lazy(
        "provider.cli.objects", "Objects: uploaded files (every read-only resource is also an object)."
    ),
    "image": Lazy(
        "provider.cli.imports", "Images and snapshots: objects with image metadata (no data is ever moved)."
    ),
    "volume": Lazy(
        "provider.cli.volumes",
        "Volumes: read-write thin clones of images, snapshots or objects, or empty disks.",
    ),
    "resource": Lazy(
        "provider.cli.resources", "The underlying resource behind every object, image, snapshot and volume."
    ),
    "fsck": Lazy(
        "provider.cli.resources", "Check the catalog against the backends; exit 1 while problems remain."
    ),
    "customize": Lazy(
        "provider.cli.customize",
        "Apply the tasks of VOLUME's image (partition and filesystem growth, hostname, passwords, SSH keys, "
        "host keys, machine-id, files) to VOLUME in place.",
    ),
    "serve": Lazy(
        "provider.cli.identity",
        "Serve the Identity (Keystone v3), Image (Glance v2), Object (Swift) and Volume (Cinder v3) APIs "
        "under gunicorn.",
    ),
    "project": Lazy(
        "provider.cli.identity",
        "Projects: the owners of images and volumes (the CLI's OS user is the project of its name).",
    ),
    "user": Lazy(
        "provider.cli.identity", "API users: a password and roles (admin, member, reader) on projects."
    ),
    "quota": Lazy(
        "provider.cli.quotas",
        "Per-project quotas: volumes, snapshots, gigabytes (volumes + snapshots), images, object_bytes.",
    ),
    "host": Lazy(
        "provider.cli.hosts",
        "Hosts that attach resources from this catalog (several share an rbd store and PostgreSQL).",
    ),
    "ganeti": Lazy(
        "provider.cli.ganeti",
        "Ganeti integration: ExtStorage provider, OS definition and hooks; a RAPI client.",
    ),
}


class LazyGroup(click.Group):
    """``COMMANDS`` are listed without importing them; ``get_command`` imports the one that runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(COMMANDS[cmd_name].module).install(self)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        # A command not imported yet is shown through a stand-in with its summary: same shortening rules.
        commands = [self.commands.get(n) or click.Command(n, help=COMMANDS[n].summary) for n in names]
        with formatter.section("Commands"):
            formatter.write_dl([(cmd.name or "", cmd.get_short_help_str(limit)) for cmd in commands])
