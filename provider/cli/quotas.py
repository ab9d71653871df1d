"""``atoll quota show|set``: per-project limits of the Volume API (and of image and object services)."""

from __future__ import annotations

import click

from provider.cli.common import Context, emit, pass_ctx, print_table
from provider.services.quotas import DEFAULTS_PROJECT, RESOURCES, QuotaSet


@click.group("quota")
def group() -> None:
    """Per-project quotas: volumes, snapshots, gigabytes (volumes + snapshots), images, object_bytes."""


def _print(obj: Context, quota: QuotaSet) -> None:
    def table() -> None:
        rows = [
            [key, "unlimited" if quota.limits[key] < 0 else str(quota.limits[key]), str(quota.usage[key])]
            for key in RESOURCES
        ]
        click.echo(f"project {quota.project}")
        print_table(["RESOURCE", "LIMIT", "IN USE"], rows)

    emit(obj, quota.to_dict(), table)


@group.command(
    epilog="""\b
Examples:
  atoll quota show                 # the caller's project
  atoll quota show demo -o json    # another project (admins)
"""
)
@click.argument("project", required=False)
@pass_ctx
def show(obj: Context, project: str | None) -> None:
    """Show the limits and usage of PROJECT (default: the caller's)."""
    _print(obj, obj.store.quotas.show(project))


@group.command(
    "set",
    epilog=f"""\b
Examples:
  atoll quota set demo --volumes 20 --gigabytes 2000
  atoll quota set '{DEFAULTS_PROJECT}' --snapshots 50         # the default of every project
  atoll quota set demo --object-bytes -1               # unlimited
""",
)
@click.argument("project")
@click.option("--volumes", type=int, help="Number of volumes.")
@click.option("--snapshots", type=int, help="Number of snapshots.")
@click.option("--gigabytes", type=int, help="GiB of volumes and snapshots together.")
@click.option("--images", type=int, help="Number of images.")
@click.option("--object-bytes", "object_bytes", type=int, help="Bytes of objects (every read-only resource).")
@pass_ctx
def set_(obj: Context, project: str, **limits: int | None) -> None:
    """Set limits of PROJECT ('*' for the defaults); -1 is unlimited. Admins only."""
    given = {k: v for k, v in limits.items() if v is not None}
    if not given:
        raise click.UsageError("give at least one limit (--volumes, --snapshots, --gigabytes, …)")
    _print(obj, obj.store.quotas.set(project, given))


def install(cli: click.Group) -> None:
    cli.add_command(group)
