"""``atoll object …``: upload, download, list, show, set, delete."""

from __future__ import annotations

import os
import sys
from typing import BinaryIO, cast

import click

from provider.cli.common import (
    Context,
    ProgressWriter,
    pass_ctx,
    print_resource,
    print_resources,
    progress,
)
from provider.utils.names import parse_pairs


@click.group("object")
def group() -> None:
    """Objects: uploaded files (every read-only resource is also an object)."""


@group.command(
    epilog="""\b
Examples:
  atoll object upload images/debian-12.raw ./debian.raw --meta source=debootstrap
  xz -dc disk.raw.xz | atoll object upload images/disk.raw -
"""
)
@click.argument("path", metavar="CONTAINER/NAME")
@click.argument("file", type=click.File("rb"), default="-", metavar="[FILE|-]")
@click.option("--meta", "meta", metavar="K=V", multiple=True, help="User metadata (repeatable).")
@click.option("--content-type", default="application/octet-stream", show_default=True)
@pass_ctx
def upload(obj: Context, path: str, file: BinaryIO, meta: tuple[str, ...], content_type: str) -> None:
    """Upload FILE (or stdin) as a read-only object, with a progress bar and its sha256."""
    metadata = parse_pairs(meta, "metadata")
    total = None
    if file is not sys.stdin.buffer:
        try:
            total = os.fstat(file.fileno()).st_size or None
        except (OSError, ValueError):
            total = None
    with progress(total, f"upload {path}") as update:
        res = obj.store.objects.upload(path, file, meta=metadata, content_type=content_type, progress=update)
    print_resource(obj, res)


@group.command()
@click.argument("ref", metavar="REF")
@click.argument("file", type=click.File("wb"), default="-", metavar="[FILE|-]")
@pass_ctx
def download(obj: Context, ref: str, file: BinaryIO) -> None:
    """Write an object's bytes (a snapshot's disk, flattened) to FILE or stdout, with a progress bar."""
    res = obj.store.objects.readable(ref)
    with progress(res.size, f"download {ref}") as update:
        obj.store.objects.download(res.id, cast(BinaryIO, ProgressWriter(file, update)))


@group.command("list")
@click.argument("container", required=False)
@pass_ctx
def list_(obj: Context, container: str | None) -> None:
    """List objects, optionally in one CONTAINER."""
    print_resources(obj, obj.store.objects.list(container))


@group.command()
@click.argument("ref", metavar="REF")
@pass_ctx
def show(obj: Context, ref: str) -> None:
    """Show one object."""
    print_resource(obj, obj.store.objects.show(ref))


@group.command("set")
@click.argument("ref", metavar="REF")
@click.option("--meta", "meta", metavar="K=V", multiple=True, help="Set user metadata (repeatable).")
@click.option("--unset", "unset", metavar="K", multiple=True, help="Remove user metadata (repeatable).")
@pass_ctx
def set_(obj: Context, ref: str, meta: tuple[str, ...], unset: tuple[str, ...]) -> None:
    """Change an object's user metadata."""
    print_resource(obj, obj.store.objects.set_meta(ref, parse_pairs(meta, "metadata"), list(unset)))


@group.command()
@click.argument("ref", metavar="REF")
@pass_ctx
def delete(obj: Context, ref: str) -> None:
    """Delete an object (refused while it is an image; data kept while clones need it)."""
    obj.store.objects.delete(ref)
    if not obj.json:
        click.echo(f"deleted {ref}")


def install(cli: click.Group) -> None:
    cli.add_command(group)
