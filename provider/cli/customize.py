"""``atoll customize``: apply an image's metadata tasks to a volume; shared by ``volume create``."""

from __future__ import annotations

from typing import Any

import click

from customization.params import InstanceParams
from customization.report import TaskOutcome
from provider.cli.common import Context, emit, pass_ctx, print_table
from provider.cli.customization_options import customization_options, params_from_options
from provider.model import Resource


def params(options: dict[str, Any]) -> InstanceParams:
    """The instance parameters of the options (a ParameterError, an InvalidInput, when one is bad)."""
    return params_from_options(**options)


def progress_line(outcome: TaskOutcome) -> None:
    """One line per task on stderr, as the engine finishes it."""
    click.echo(f"  {outcome.line()}", err=True)


def run(obj: Context, vol: Resource, instance: InstanceParams) -> dict[str, Any]:
    """Customize ``vol`` with a progress line per task on stderr; return the report as a dict."""
    return obj.store.customize.run(vol.id, instance, on_progress=progress_line).to_dict()


def print_report(obj: Context, report: dict[str, Any]) -> None:
    def table() -> None:
        rows = [[t["name"], t["status"], f"{t['seconds']:.2f}", t["message"]] for t in report["tasks"]]
        print_table(["TASK", "STATUS", "SECONDS", "MESSAGE"], rows)
        for warning in report["warnings"]:
            click.echo(f"warning: {warning}")

    emit(obj, report, table)


@click.command(
    epilog="""\b
Examples:
  atoll customize web1 --hostname web1 --ssh-key ~/.ssh/id_ed25519.pub
  atoll customize web1 --password-file pw.txt --file /etc/motd=motd.txt:root:root:0644
"""
)
@click.argument("volume", metavar="VOLUME")
@customization_options
@pass_ctx
def customize(obj: Context, volume: str, **options: Any) -> None:
    """Apply the tasks of VOLUME's image (partition and filesystem growth, hostname, passwords, SSH keys,
    host keys, machine-id, files) to VOLUME in place. Nothing runs when its source is a Snapshot."""
    vol = obj.store.volumes.show(volume)
    print_report(obj, run(obj, vol, params(options)))


def install(cli: click.Group) -> None:
    cli.add_command(customize)
