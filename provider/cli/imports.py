"""``atoll image import`` and ``atoll image jobs``: convert a qcow2/vmdk/vhdx/vpc/vdi file or URL into a
raw image, in the foreground with a progress bar; list import jobs (the server's too)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlsplit

import click

from provider.cli import images
from provider.cli.common import Context, emit, pass_ctx, print_resource, print_table, progress
from provider.errors import AtollError
from provider.imaging.inspect import FORMATS
from provider.utils.names import parse_pairs


class ImportFailed(AtollError):
    message = "import of %(name)s failed: %(reason)s"


@click.command(
    "import",
    epilog="""\b
Examples:
  atoll image import debian-12 --from debian-12.qcow2
  atoll image import win --from disk.vmdk --disk-format vmdk --property OSFAMILY=windows
  atoll image import cirros --from https://example.org/cirros.qcow2
""",
)
@click.argument("name")
@click.option("--from", "source", required=True, metavar="FILE|URL", help="A local file or an http(s) URL.")
@click.option(
    "--disk-format",
    type=click.Choice(FORMATS),
    default=None,
    help="The format the data must be in (default: whatever the inspector detects).",
)
@click.option("--property", "props", metavar="K=V", multiple=True, help="Image property (repeatable).")
@click.option("--public", is_flag=True, help="Visible to every user.")
@pass_ctx
def import_cmd(
    obj: Context, name: str, source: str, disk_format: str | None, props: tuple[str, ...], public: bool
) -> None:
    """Import FILE or URL as the image NAME: inspected, converted to raw, registered.

    Accepted formats: raw, qcow2, vmdk, vhdx, vpc, vdi, iso (raw and iso are stored as they are). Images
    naming a backing file or an external data file, vmdk extents outside the file, a format other than
    --disk-format and virtual sizes above imports.max_virtual_size are refused.
    """
    method = "web-download" if urlsplit(source).scheme in ("http", "https") else "local-file"
    options = {"properties": parse_pairs(props), "visibility": "public" if public else "private"}
    store = obj.store
    job = store.imports.submit(
        name, source, method=method, disk_format=disk_format, runner="cli", options=options
    )
    with ExitStack() as stack:
        job = store.imports.run(job.id, _bars(stack))
    if job.state != "active":
        raise ImportFailed(name=name, reason=job.reason or job.state)
    print_resource(obj, store.images.show(job.image_id))


def _bars(stack: ExitStack) -> Callable[[str | None, int, int | None], None]:
    """One progress bar per phase on stderr (hidden when stderr is not a terminal)."""
    state: dict[str, Any] = {"advance": None, "done": 0}

    def listener(phase: str | None, done: int, total: int | None) -> None:
        if phase:  # a new phase
            stack.close()
            state["advance"] = stack.enter_context(progress(total, phase))
            state["done"] = 0
        elif state["advance"] is not None and done > state["done"]:
            state["advance"](done - state["done"])
            state["done"] = done

    return listener


@click.command("jobs")
@click.argument("ref", required=False, metavar="[JOB|IMAGE]")
@pass_ctx
def jobs_cmd(obj: Context, ref: str | None) -> None:
    """List import jobs (yours; an admin sees all), or show one: state, phase, progress, reason."""
    store = obj.store
    if ref:
        job = store.imports.status(ref)
        print_resource(obj, job.to_dict())
        return
    found = store.imports.list()
    rows = [
        [
            j.id,
            j.name,
            j.state,
            j.phase or "-",
            "-" if j.progress is None else f"{j.progress}%",
            j.method,
            j.reason or "-",
        ]
        for j in found
    ]
    emit(
        obj,
        [j.to_dict() for j in found],
        lambda: print_table(["ID", "IMAGE", "STATE", "PHASE", "PROGRESS", "METHOD", "REASON"], rows),
    )


def install(cli: click.Group) -> None:
    """The image group (provider.cli.images) with its import and jobs commands."""
    images.install(cli)
    images.group.add_command(import_cmd)
    images.group.add_command(jobs_cmd)
