"""``atoll image …``: register, unregister, set, list, show, share, delete."""

from __future__ import annotations

import click

from provider.cli.common import Context, pass_ctx, print_resource, print_resources
from provider.utils.names import parse_pairs


@click.group("image")
def group() -> None:
    """Images and snapshots: objects with image metadata (no data is ever moved)."""


@group.command(
    "register",
    epilog="""\b
Examples:
  atoll image register images/debian-12.raw --name debian-12 \\
      --property OSFAMILY=linux --property ROOT_PARTITION=1 --property USERS=root --public
""",
)
@click.argument("ref", metavar="REF")
@click.option("--name", required=True, help="Image name (unique).")
@click.option("--property", "props", metavar="K=V", multiple=True, help="Image property (repeatable).")
@click.option("--public", is_flag=True, help="Visible to every user.")
@click.option("--disk-format", default="raw", show_default=True, help="Only raw disks are stored.")
@pass_ctx
def register_cmd(
    obj: Context, ref: str, name: str, props: tuple[str, ...], public: bool, disk_format: str
) -> None:
    """Register the object REF as an image (idempotent)."""
    res = obj.store.images.register(
        ref, name, properties=parse_pairs(props), public=public, disk_format=disk_format
    )
    print_resource(obj, res)


@group.command()
@click.argument("ref", metavar="REF")
@pass_ctx
def unregister(obj: Context, ref: str) -> None:
    """Remove the image metadata: REF is a plain object again."""
    print_resource(obj, obj.store.images.unregister(ref))


@group.command(
    "set",
    epilog="""\b
Examples:
  atoll image set web1-monday --unset EXCLUDE_ALL_TASKS      # snapshot -> image
  atoll image set debian-12 --property EXCLUDE_ALL_TASKS=yes  # image -> snapshot
  atoll image set debian-12 --visibility public
""",
)
@click.argument("ref", metavar="REF")
@click.option("--property", "props", metavar="K=V", multiple=True, help="Set a property (repeatable).")
@click.option("--unset", "unset", metavar="K", multiple=True, help="Remove a property (repeatable).")
@click.option("--name", default=None, help="Rename the image.")
@click.option("--visibility", type=click.Choice(["private", "shared", "public"]), default=None)
@pass_ctx
def set_(
    obj: Context,
    ref: str,
    props: tuple[str, ...],
    unset: tuple[str, ...],
    name: str | None,
    visibility: str | None,
) -> None:
    """Change an image's properties, name or visibility."""
    res = obj.store.images.set(
        ref, set_props=parse_pairs(props), unset=list(unset), name=name, visibility=visibility
    )
    print_resource(obj, res)


@group.command("list")
@click.option("--all", "all_", is_flag=True, help="Include snapshots.")
@pass_ctx
def list_(obj: Context, all_: bool) -> None:
    """List the images you can see (yours, shared with you, public)."""
    print_resources(obj, obj.store.images.list(include_snapshots=all_))


@group.command()
@click.argument("ref", metavar="REF")
@pass_ctx
def show(obj: Context, ref: str) -> None:
    """Show an image or snapshot with its properties."""
    print_resource(obj, obj.store.images.show(ref))


@group.command()
@click.argument("ref", metavar="REF")
@click.argument("user")
@pass_ctx
def share(obj: Context, ref: str, user: str) -> None:
    """Share an image with USER."""
    print_resource(obj, obj.store.images.add_member(ref, user))


@group.command()
@click.argument("ref", metavar="REF")
@click.argument("user")
@pass_ctx
def unshare(obj: Context, ref: str, user: str) -> None:
    """Stop sharing an image with USER."""
    print_resource(obj, obj.store.images.remove_member(ref, user))


@group.command()
@click.argument("ref", metavar="REF")
@pass_ctx
def delete(obj: Context, ref: str) -> None:
    """Unregister and delete the image's object (data kept while clones need it)."""
    obj.store.images.delete(ref)
    if not obj.json:
        click.echo(f"deleted {ref}")


def install(cli: click.Group) -> None:
    cli.add_command(group)
