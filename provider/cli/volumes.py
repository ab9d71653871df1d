"""``atoll volume …``: create, snapshot, grow, reimage, delete, list, show; attach, detach, open, close."""

from __future__ import annotations

from typing import Any

import click

from provider.cli import customize as customize_cli
from provider.cli.common import SIZE, Context, emit, pass_ctx, print_resource, print_resources
from provider.cli.customization_options import customization_options
from provider.errors import CapabilityNotSupported


@click.group("volume")
def group() -> None:
    """Volumes: read-write thin clones of images, snapshots or objects, or empty disks."""


@group.command(
    epilog="""\b
Examples:
  atoll volume create web1 --from debian-12 --size 10G --hostname web1 --ssh-key ~/.ssh/id_ed25519.pub
  atoll volume create restore --from web1-monday        # a Snapshot's clone: bit-identical, no tasks
  atoll volume create scratch --size 512M                # empty volume
"""
)
@click.argument("name")
@click.option("--size", type=SIZE, default=None, help="Size (512M, 10G, bytes); default: the source's size.")
@click.option("--from", "source", metavar="REF", default=None, help="Image, snapshot or object to clone.")
@click.option("--no-customize", is_flag=True, help="Clone an image without running its tasks.")
@customization_options
@pass_ctx
def create(
    obj: Context, name: str, size: int | None, source: str | None, no_customize: bool, **options: Any
) -> None:
    """Create volume NAME: empty, or a thin clone of REF (no data is copied).

    A clone of an Image is customized from the image's properties and the options below (a progress line
    per task on stderr); a failed customization removes the new volume. Clones of Snapshots and plain
    Objects are left as they are, and without the options below so are Images that are no Linux system
    and name no OSFAMILY or ROOT_PARTITION (data disks, ISOs).
    """
    wanted = any(options.values())
    if wanted and source is None:
        raise click.UsageError("customization options need --from IMAGE")
    if wanted and no_customize:
        raise click.UsageError("--no-customize contradicts the customization options")
    instance = customize_cli.params(options)  # validated before anything is created
    if source is None or no_customize:
        vol, report = obj.store.volumes.create(name, size=size, source=source), None
    else:
        vol, report = obj.store.volumes.create_customized(
            name, source, instance, size=size, always=wanted, on_progress=customize_cli.progress_line
        )
    if report is not None and obj.json:  # the table view already had a progress line per task on stderr
        print_resource(obj, {**obj.store.volumes.show(vol.id).to_dict(), "customization": report.to_dict()})
        return
    print_resource(obj, obj.store.volumes.show(vol.id))


@group.command()
@click.argument("volume", metavar="VOLUME")
@click.argument("name")
@pass_ctx
def snapshot(obj: Context, volume: str, name: str) -> None:
    """Take a read-only Snapshot NAME of VOLUME (an image with EXCLUDE_ALL_TASKS; no data copied)."""
    print_resource(obj, obj.store.volumes.snapshot(volume, name))


@group.command()
@click.argument("volume", metavar="VOLUME")
@click.option("--size", type=SIZE, required=True, help="New size (never smaller than now).")
@pass_ctx
def grow(obj: Context, volume: str, size: int) -> None:
    """Grow VOLUME to SIZE (idempotent when it already has that size)."""
    print_resource(obj, obj.store.volumes.grow(volume, size))


@group.command(
    epilog="""\b
Examples:
  atoll volume reimage web1                      # web1 holds debian-12 again, as when it was cloned
  atoll customize web1 --hostname web1           # then customize it again if it should be
"""
)
@click.argument("volume", metavar="VOLUME")
@pass_ctx
def reimage(obj: Context, volume: str) -> None:
    """Make VOLUME a fresh thin clone of what it was cloned from again: its data is discarded, no data is
    copied; its name, id, size and snapshots stay.

    The volume must not be attached. It is not customized again: run 'atoll customize VOLUME'. An rbd
    volume whose snapshots still read its data cannot be reimaged.
    """
    print_resource(obj, obj.store.volumes.reimage(volume))


@group.command()
@click.argument("volume", metavar="VOLUME")
@pass_ctx
def delete(obj: Context, volume: str) -> None:
    """Delete VOLUME (its snapshots stay)."""
    obj.store.volumes.delete(volume)
    if not obj.json:
        click.echo(f"deleted {volume}")


@group.command("list")
@pass_ctx
def list_(obj: Context) -> None:
    """List volumes."""
    print_resources(obj, obj.store.volumes.list())


@group.command()
@click.argument("volume", metavar="VOLUME")
@pass_ctx
def show(obj: Context, volume: str) -> None:
    """Show one volume."""
    print_resource(obj, obj.store.volumes.show(volume))


@group.command(
    epilog="""\b
Examples:
  atoll volume attach web1                 # /dev/loop3 (kernelspace: a block device)
  atoll volume attach web1 --userspace     # nbd:unix:/var/lib/atoll/run/…/nbd.sock (a QEMU URI)
  atoll volume attach web1-monday          # a snapshot or image attaches read-only
  atoll -o json volume attach web1         # {"device": …, "uri": …, "libvirt_xml": "<disk …>"}
  atoll volume attach web1 --domain vm1    # hot-plug into libvirt domain vm1 (first free vdX)
  atoll volume attach web1 --domain vm1 --target vdc --config --direct
"""
)
@click.argument("ref", metavar="VOLUME")
@click.option("--userspace", is_flag=True, help="Give a QEMU URI (NBD socket or raw file), no block device.")
@click.option("--read-only", "readonly", is_flag=True, help="Attach a volume read-only.")
@click.option("--domain", metavar="DOM", default=None, help="Plug it into this libvirt domain.")
@click.option(
    "--target", default=None, help="Disk target (vdb…); default: vda in the XML, a free one in DOM."
)
@click.option("--config", "persistent", is_flag=True, help="With --domain: also into DOM's definition.")
@click.option("--direct", is_flag=True, help="With --domain: QEMU opens the qcow2 file itself (fastest).")
@pass_ctx
def attach(
    obj: Context,
    ref: str,
    userspace: bool,
    readonly: bool,
    domain: str | None,
    target: str | None,
    persistent: bool,
    direct: bool,
) -> None:
    """Attach VOLUME on this host and print its block device and/or QEMU URI, one per line; with
    --domain plug it into a libvirt domain and print the disk target.

    Idempotent: attaching an attached volume prints the same device. Snapshots, images and objects
    attach read-only.
    """
    ro = True if readonly else None
    if domain is None:
        if persistent or direct:
            raise click.UsageError("--config and --direct go with --domain")
        att = obj.store.volumes.attach(ref, userspace=userspace, readonly=ro)
        lines = att.lines
    else:
        if userspace:
            raise click.UsageError("--userspace goes without --domain (a domain gets a userspace path)")
        att = obj.store.domains.attach(
            ref, domain, target=target, config=persistent, direct=direct, readonly=ro
        )
        lines = [f"{att.domain} {att.target}"]
    res = obj.store.resources.get(att.resource_id)
    try:
        xml = obj.store.domains.render(
            res, att, target or att.target or "vda", define_secret=domain is not None
        )
    except CapabilityNotSupported:
        if domain is not None:
            raise
        xml = None  # attached for QEMU or a block device user; libvirt cannot name it (an RBD namespace)
    data = {**att.to_dict(), "libvirt_xml": xml}
    emit(obj, data, lambda: click.echo("\n".join(lines)))


@group.command(
    epilog="""\b
Examples:
  atoll volume detach web1                          # release what attach made on this host
  atoll volume detach web1 --domain vm1             # unplug from vm1 (the guest lets it go), then release
  atoll volume detach web1 --domain vm1 --timeout 120
"""
)
@click.argument("ref", metavar="VOLUME")
@click.option("--domain", metavar="DOM", default=None, help="Unplug it from this libvirt domain first.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="S",
    help="Seconds the guest gets to release the disk (default: libvirt.detach_timeout).",
)
@pass_ctx
def detach(obj: Context, ref: str, domain: str | None, timeout: float | None) -> None:
    """Undo what attach made for VOLUME on this host (idempotent). A volume plugged into a libvirt
    domain is unplugged with --domain, and released only once the guest let it go."""
    if domain is None:
        if timeout is not None:
            raise click.UsageError("--timeout goes with --domain")
        obj.store.volumes.detach(ref)
    else:
        obj.store.domains.detach(ref, domain, timeout=timeout)
    if not obj.json:
        click.echo(f"detached {ref}")


@group.command(
    epilog="""\b
Examples:
  atoll volume xml web1                    # as attached now: block device, NBD socket, file or rbd
  atoll volume xml web1 --direct --target vdb > disk.xml && virsh attach-device vm1 disk.xml
"""
)
@click.argument("ref", metavar="VOLUME")
@click.option("--target", default=None, help="Disk target (default: as plugged, else vda).")
@click.option("--direct", is_flag=True, help="The qcow2 file itself (QEMU opens the chain; no attach).")
@pass_ctx
def xml(obj: Context, ref: str, target: str | None, direct: bool) -> None:
    """Print the libvirt <disk> element of VOLUME (rbd with cephx: the libvirt secret is defined)."""
    text = obj.store.domains.xml(ref, target=target, direct=direct)
    emit(obj, {"libvirt_xml": text}, lambda: click.echo(text, nl=False))


@group.command(
    "open",
    epilog="""\b
Examples:
  atoll volume open web1             # this host alone may write web1 (the default after attach)
  atoll volume open web1 --shared    # live migration: both hosts hold web1 until one closes it
""",
)
@click.argument("ref", metavar="VOLUME")
@click.option("--shared", is_flag=True, help="Share the volume with one other host (live migration).")
@pass_ctx
def open_(obj: Context, ref: str, shared: bool) -> None:
    """Make VOLUME ready for I/O on this host (Ganeti open); shared stores (rbd) take its write lock."""
    obj.store.datapath.open(ref, exclusive=not shared)
    if not obj.json:
        click.echo(f"opened {ref} {'shared' if shared else 'exclusively'}")


@group.command("close")
@click.argument("ref", metavar="VOLUME")
@pass_ctx
def close_(obj: Context, ref: str) -> None:
    """This host stops I/O on VOLUME (Ganeti close); its write lock goes, the device stays."""
    obj.store.datapath.close(ref)
    if not obj.json:
        click.echo(f"closed {ref}")


def install(cli: click.Group) -> None:
    cli.add_command(group)
