"""``atoll resource show`` and ``atoll fsck``: the unified view and the consistency check."""

from __future__ import annotations

import json
import sys

import click

from provider.cli.common import Context, pass_ctx, print_resource, print_table, progress
from provider.services.fsck import report_json
from provider.services.scrub import ScrubReport
from provider.utils.sizes import format_size


@click.group("resource")
def group() -> None:
    """The underlying resource behind every object, image, snapshot and volume."""


@group.command()
@click.argument("ref", metavar="REF")
@pass_ctx
def show(obj: Context, ref: str) -> None:
    """Every view of REF, its derived kind, lineage (parents), children and dependents."""
    print_resource(obj, obj.store.resources.show(ref))


@click.command(
    epilog="""\b
Examples:
  atoll fsck                     # after a crash: what is interrupted, orphaned, stale
  atoll fsck --repair            # fix it (data of finished operations is never touched)
  atoll fsck --scrub             # also re-hash read-only data (Ctrl-C stops it, a rerun resumes)
"""
)
@click.option(
    "--repair",
    is_flag=True,
    help="Fix what can be fixed (interrupted operations, orphans, stale attachments).",
)
@click.option(
    "--scrub", is_flag=True, help="Re-hash read-only resources against their sha256; never repairs."
)
@click.option("--restart", is_flag=True, help="With --scrub: start over instead of resuming a stopped scrub.")
@pass_ctx
def fsck(obj: Context, repair: bool, scrub: bool, restart: bool) -> None:
    """Check the catalog against the backends; exit 1 while problems remain."""
    report = obj.store.fsck.run(repair=repair)
    scrubbed = _scrub(obj, restart) if scrub else None
    if obj.json:
        data = json.loads(report_json(report))
        if scrubbed is not None:
            data["scrub"] = scrubbed.to_dict()
        click.echo(json.dumps(data))
    else:
        rows = [[f.problem, f.subject, f.detail, "yes" if f.repaired else "no"] for f in report.findings]
        if rows:
            print_table(["PROBLEM", "SUBJECT", "DETAIL", "REPAIRED"], rows)
        state = "clean" if report.clean else "problems found" + ("" if repair else " (run with --repair)")
        click.echo(f"{report.checked} resources checked: {state}")
        if scrubbed is not None:
            _print_scrub(scrubbed)
    if not report.clean or (scrubbed is not None and not scrubbed.clean):
        sys.exit(1)


def _scrub(obj: Context, restart: bool) -> ScrubReport:
    scrub = obj.store.scrub
    start, count, total = scrub.pending(restart)
    if start.resumed:
        click.echo(f"atoll: resuming the scrub started {start.started_at} ({count} resources left)", err=True)
    try:
        with progress(total, "scrub") as advance:
            return scrub.run(restart=restart, advance=advance)
    except KeyboardInterrupt:
        left = scrub.pending()[1]
        click.echo(
            f"atoll: scrub stopped, {left} of {count} resources left: run 'atoll fsck --scrub' to resume",
            err=True,
        )
        sys.exit(130)


def _print_scrub(report: ScrubReport) -> None:
    for m in report.mismatches:
        click.echo(f"CORRUPT {m.kind} {m.name} ({m.id}): sha256 {m.actual}, recorded {m.expected}")
        click.echo(f"  affected: {', '.join(m.affected) or 'nothing derived from it'}")
    for u in report.unreadable:
        click.echo(f"UNREADABLE {u['id']}: {u['error']}")
    state = (
        "clean"
        if report.clean
        else "DATA DAMAGED: restore the resources above from a backup (nothing was changed)"
    )
    recorded = f", {report.recorded} missing digests recorded" if report.recorded else ""
    click.echo(
        f"scrub: {report.checked} read-only resources ({format_size(report.bytes)}) re-hashed{recorded}: "
        f"{state}"
    )


def install(cli: click.Group) -> None:
    cli.add_command(group)
    cli.add_command(fsck)
