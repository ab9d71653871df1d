"""``atoll host list`` and ``atoll host forget``: the hosts sharing a catalog, and declaring one dead."""

from __future__ import annotations

import click

from provider.cli.common import Context, emit, pass_ctx, print_table


@click.group("host")
def group() -> None:
    """Hosts that attach resources from this catalog (several share an rbd store and PostgreSQL)."""


@group.command("list")
@pass_ctx
def list_hosts(obj: Context) -> None:
    """Every known host: this one, live ones, forgotten ones, and how many attachments each holds."""
    hosts = obj.store.hosts.list()
    emit(
        obj,
        [h.to_dict() for h in hosts],
        lambda: print_table(
            ["HOST", "STATE", "ATTACHMENTS", "SEEN", "FORGOTTEN"],
            [[h.name, h.state, h.attachments, h.seen_at or "-", h.forgotten_at or "-"] for h in hosts],
        ),
    )


@group.command(
    epilog="""\b
Examples:
  atoll host forget node2 --yes     # node2 burnt down: release what it had attached
"""
)
@click.argument("host")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def forget(obj: Context, host: str, yes: bool) -> None:
    """Declare HOST dead: drop its attachments and break its RBD write locks, so its volumes can be
    deleted or attached elsewhere; fsck then treats its unfinished operations as interrupted.

    Only for a host that is really down: a live host would go on writing volumes another host may now
    attach. Admins only.
    """
    if not yes:
        click.confirm(f"{host} must be down for good (powered off or fenced). Forget it?", abort=True)
    released = obj.store.hosts.forget(host)
    emit(
        obj,
        {"host": host, "released": released},
        lambda: click.echo(f"host {host} forgotten; released: {', '.join(released) or 'nothing'}"),
    )


def install(cli: click.Group) -> None:
    cli.add_command(group)
