"""``atoll object …``: upload, download, list, show, set, delete."""

from __future__ import annotations

import json
import os
import sys
from typing import BinaryIO, TextIO, cast

import click

from provider.cli import swift_sync
from provider.cli.common import (
    Context,
    ProgressWriter,
    pass_ctx,
    print_resource,
    print_resources,
    progress,
)
from provider.cli.swift_sync import SwiftClient
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


@group.command(
    epilog="""\b
Examples:
  atoll object sync disk.raw images/disk.raw --url http://api:9292 --user alpha:alice --password-file pw
"""
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.argument("path", metavar="CONTAINER/NAME")
@click.option("--url", required=True, help="The Atoll API (atoll serve) base URL.")
@click.option("--user", required=True, metavar="PROJECT:USER", help="Swift v1 credentials' user.")
@click.option("--password-file", type=click.File("r"), required=True, help="File holding the password.")
@pass_ctx
def sync(obj: Context, file: str, path: str, url: str, user: str, password_file: TextIO) -> None:
    """Upload FILE to a remote Atoll as CONTAINER/NAME, sending only the 4 MiB blocks it lacks."""
    client = SwiftClient(url, user, password_file.read().strip())
    with progress(None, f"sync {path}") as update:
        report = swift_sync.sync(client, file, path, update)
    if obj.json:
        click.echo(json.dumps(report.to_dict()))
    else:
        click.echo(
            f"synced {path}: {report.size} bytes, {report.missing} of {report.blocks} blocks sent "
            f"({report.bytes_sent} bytes), id {report.object_id}"
        )


def install(cli: click.Group) -> None:
    cli.add_command(group)
