"""``atoll resource show`` and ``atoll fsck``: the unified view and the consistency check."""

from __future__ import annotations

import sys

import click

from provider.cli.common import Context, pass_ctx, print_resource, print_table
from provider.services.fsck import report_json


@click.group("resource")
def group() -> None:
    """The underlying resource behind every object, image, snapshot and volume."""


@group.command()
@click.argument("ref", metavar="REF")
@pass_ctx
def show(obj: Context, ref: str) -> None:
    """Every view of REF, its derived kind, lineage (parents), children and dependents."""
    print_resource(obj, obj.store.resources.show(ref))


@click.command()
@click.option("--repair", is_flag=True, help="Fix what can be fixed (interrupted operations, orphans).")
@pass_ctx
def fsck(obj: Context, repair: bool) -> None:
    """Check the catalog against the backends; exit 1 while problems remain."""
    report = obj.store.fsck.run(repair=repair)
    if obj.json:
        click.echo(report_json(report))
    else:
        rows = [[f.problem, f.subject, f.detail, "yes" if f.repaired else "no"] for f in report.findings]
        if rows:
            print_table(["PROBLEM", "SUBJECT", "DETAIL", "REPAIRED"], rows)
        state = "clean" if report.clean else "problems found" + ("" if repair else " (run with --repair)")
        click.echo(f"{report.checked} resources checked: {state}")
    if not report.clean:
        sys.exit(1)


def install(cli: click.Group) -> None:
    cli.add_command(group)
    cli.add_command(fsck)
