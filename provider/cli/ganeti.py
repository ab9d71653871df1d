"""``atoll ganeti …``: install the Ganeti integration on a node, create instances over RAPI, list the
volumes Ganeti uses."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from provider.cli.common import SIZE, Context, emit, pass_ctx, print_table
from provider.errors import UsageError
from provider.ganeti import install as inst
from provider.ganeti import rapi
from provider.utils.sizes import format_size


@click.group("ganeti")
def group() -> None:
    """Ganeti integration: ExtStorage provider, OS definition and hooks; a RAPI client."""


@group.command(
    "install",
    epilog="""\b
Examples:
  atoll ganeti install          # into /srv/ganeti/{extstorage,os}/atoll and /etc/ganeti/hooks
  atoll --config /etc/atoll/atoll.yaml ganeti install --os-dir /usr/share/ganeti/os
""",
)
@click.option(
    "--extstorage-dir",
    type=click.Path(path_type=Path),
    default=inst.DEFAULT_EXTSTORAGE_DIR,
    show_default=True,
    help="ExtStorage search directory; the provider goes into DIR/atoll.",
)
@click.option(
    "--os-dir",
    type=click.Path(path_type=Path),
    default=inst.DEFAULT_OS_DIR,
    show_default=True,
    help="OS search directory; the OS definition goes into DIR/atoll.",
)
@click.option(
    "--hooks-dir",
    type=click.Path(path_type=Path),
    default=inst.DEFAULT_HOOKS_DIR,
    show_default=True,
    help="Ganeti's hooks directory.",
)
@click.option(
    "--python",
    "python",
    default=sys.executable,
    show_default=True,
    help="Interpreter of the installed Atoll, written into every script.",
)
@click.option(
    "--skip",
    type=click.Choice(["extstorage", "os", "hooks"]),
    multiple=True,
    help="Leave one part out (repeatable).",
)
@click.option(
    "--prefork/--no-prefork",
    default=True,
    show_default=True,
    help="Scripts hand their calls to a per-node verb server that has Atoll imported already (started "
    "on first use, exits when idle or upgraded); --no-prefork runs every call in its own interpreter.",
)
@pass_ctx
def install_cmd(
    obj: Context,
    extstorage_dir: Path,
    os_dir: Path,
    hooks_dir: Path,
    python: str,
    skip: tuple[str, ...],
    prefork: bool,
) -> None:
    """Install the provider, OS definition and hooks on this node (idempotent).

    The scripts call this Atoll with the configuration given to this command (--config or
    $ATOLL_CONFIG), else the default /etc/atoll/atoll.yaml.
    """
    changes = inst.install(
        python,
        obj.config_path,
        extstorage_dir=None if "extstorage" in skip else extstorage_dir,
        os_dir=None if "os" in skip else os_dir,
        hooks_dir=None if "hooks" in skip else hooks_dir,
        prefork=prefork,
    )
    data = [{"path": str(c.path), "state": c.state} for c in changes]
    emit(obj, data, lambda: print_table(["STATE", "PATH"], [[c.state, c.path] for c in changes]))


def _read_secret(path: Path | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text().rstrip("\n")
    except OSError as e:
        raise UsageError(
            "cannot read the %(what)s file %(path)s: %(err)s", what=what, path=str(path), err=e.strerror
        ) from e
    if not text or "\n" in text:
        raise UsageError("the %(what)s file %(path)s must hold one line", what=what, path=str(path))
    return text


def _read_keys(paths: tuple[Path, ...]) -> tuple[str, ...]:
    keys: list[str] = []
    for path in paths:
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise UsageError("cannot read SSH key file %(p)s: %(e)s", p=str(path), e=e.strerror) from e
        keys += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return tuple(keys)


def _nic(spec: str) -> dict[str, str]:
    nic: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(
                "invalid --nic %(spec)r: use KEY=VALUE[,KEY=VALUE] (mode, link, ip, mac, network)", spec=spec
            )
        nic[key.strip()] = value.strip()
    return nic


def _progress(start: float) -> tuple[Callable[[str], None], Callable[[rapi.LogEntry], None]]:
    def on_status(status: str) -> None:
        click.echo(f"[{time.monotonic() - start:6.1f}s] job {status}", err=True)

    def on_log(entry: rapi.LogEntry) -> None:
        for line in entry.message.splitlines() or [""]:
            click.echo(f"[{time.monotonic() - start:6.1f}s]   {line}", err=True)

    return on_status, on_log


@group.command(
    "create-instance",
    epilog="""\b
Examples:
  atoll ganeti create-instance web1 --image debian-12 --size 10G --ssh-key ~/.ssh/id_ed25519.pub \\
      --cluster https://cluster1:5080 --user ops --password-file ~/.ganeti-rapi --ca /etc/ganeti/rapi-ca.pem
""",
)
@click.argument("name")
@click.option("--image", required=True, metavar="REF", help="Image (or snapshot, object) the disk clones.")
@click.option("--size", type=SIZE, required=True, help="Disk size (10G, 512M).")
@click.option("--hostname", default=None, help="Guest host name (default: the instance name).")
@click.option(
    "--ssh-key",
    "ssh_keys",
    type=click.Path(path_type=Path, dir_okay=False),
    multiple=True,
    help="File of SSH public keys to authorize (repeatable).",
)
@click.option(
    "--root-password-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="File holding the password for the image's users (sent as a secret OS parameter).",
)
@click.option("--os", "os_type", default="atoll+default", show_default=True, help="OS definition+variant.")
@click.option("--node", default=None, help="Primary node (default: the cluster's iallocator).")
@click.option("--iallocator", default=None, help="Instance allocator to choose the node.")
@click.option("--hypervisor", default=None, help="Hypervisor (default: the cluster's).")
@click.option("--memory", type=SIZE, default=None, help="Memory (512M, 2G).")
@click.option("--vcpus", type=int, default=None, help="Virtual CPUs.")
@click.option("--nic", "nics", multiple=True, metavar="SPEC", help="NIC as mode=…,link=…,ip=… (repeatable).")
@click.option("--no-start", is_flag=True, help="Do not start the instance after installing it.")
@click.option("--name-check/--no-name-check", default=True, help="Resolve NAME in DNS (Ganeti's check).")
@click.option("--dry-run", is_flag=True, help="Let Ganeti check the request without doing it.")
@click.option(
    "--cluster",
    envvar="ATOLL_RAPI_URL",
    default="https://localhost:5080",
    show_default=True,
    help="RAPI URL (env ATOLL_RAPI_URL).",
)
@click.option("--user", envvar="ATOLL_RAPI_USER", default=None, help="RAPI user (env ATOLL_RAPI_USER).")
@click.option(
    "--password-file",
    envvar="ATOLL_RAPI_PASSWORD_FILE",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    help="File with the RAPI password.",
)
@click.option(
    "--ca",
    envvar="ATOLL_RAPI_CA",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="CA certificate to verify the RAPI's TLS certificate with (default: the system's).",
)
@click.option("--insecure", is_flag=True, help="Do not verify the RAPI's certificate (not recommended).")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Seconds to wait for the job.")
@pass_ctx
def create_instance(
    obj: Context,
    name: str,
    image: str,
    size: int,
    hostname: str | None,
    ssh_keys: tuple[Path, ...],
    root_password_file: Path | None,
    os_type: str,
    node: str | None,
    iallocator: str | None,
    hypervisor: str | None,
    memory: int | None,
    vcpus: int | None,
    nics: tuple[str, ...],
    no_start: bool,
    name_check: bool,
    dry_run: bool,
    cluster: str,
    user: str | None,
    password_file: Path | None,
    ca: str | None,
    insecure: bool,
    timeout: float,
) -> None:
    """Create instance NAME through Ganeti's RAPI with one Atoll disk cloned from --image, follow its job
    and report the outcome."""
    if insecure:
        click.echo("atoll: warning: not verifying the RAPI's TLS certificate", err=True)
    client = rapi.RapiClient(
        cluster, user, _read_secret(password_file, "RAPI password"), ca, verify=not insecure
    )
    request = rapi.InstanceRequest(
        name=name,
        image=image,
        size=size,
        os_type=os_type,
        hostname=hostname,
        ssh_keys=_read_keys(ssh_keys),
        password=_read_secret(root_password_file, "root password"),
        node=node,
        iallocator=iallocator,
        hypervisor=hypervisor,
        memory=memory,
        vcpus=vcpus,
        nics=tuple(_nic(n) for n in nics),
        start=not no_start,
        name_check=name_check,
        ip_check=name_check,
    )
    start = time.monotonic()
    job_id = client.create_instance(request, dry_run=dry_run)
    click.echo(
        f"[{0.0:6.1f}s] submitted job {job_id}: create {name} ({format_size(size)} from {image})", err=True
    )
    on_status, on_log = _progress(start)
    job = client.wait_success(job_id, on_log=on_log, on_status=on_status, timeout=timeout)
    seconds = time.monotonic() - start
    result = {
        "instance": name,
        "job": job_id,
        "status": job["status"],
        "seconds": round(seconds, 1),
        "dry_run": dry_run,
        "result": job.get("opresult"),
    }
    verb = "checked (dry run)" if dry_run else "created"
    emit(obj, result, lambda: click.echo(f"instance {name} {verb} by job {job_id} in {seconds:.1f} s"))


@group.command("volumes")
@pass_ctx
def volumes(obj: Context) -> None:
    """List the volumes Ganeti created, with their instance and origin."""
    vols = [v for v in obj.store.volumes.list() if v.volume and v.volume.ganeti.get("VOL_NAME")]
    data = [{"name": v.name, "size": v.size, **(v.volume.ganeti if v.volume else {})} for v in vols]
    rows = [
        [
            d["name"],
            format_size(d["size"]),
            d.get("instance") or "-",
            d.get("VOL_CNAME") or "-",
            d.get("origin") or "-",
        ]
        for d in data
    ]
    emit(obj, data, lambda: print_table(["VOLUME", "SIZE", "INSTANCE", "DISK NAME", "ORIGIN"], rows))


def install(cli: click.Group) -> None:
    cli.add_command(group)
