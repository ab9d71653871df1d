"""The ``atoll`` command line: one click group, subcommands per service.

Errors print one line on stderr and exit 1 (2 for usage errors).
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any, NoReturn

import click

from provider import __version__
from provider.cli import customize, ganeti, identity, images, imports, objects, resources, volumes
from provider.cli.common import Context
from provider.errors import AtollError


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
    epilog="""\b
Examples:
  atoll object upload images/debian-12.raw debian.raw     # upload a file: an Object
  atoll image register images/debian-12.raw --name debian-12 --property OSFAMILY=linux
  atoll volume create web1 --from debian-12 --size 10G     # thin clone: a Volume
  atoll volume snapshot web1 web1-monday                   # a read-only Snapshot
  atoll image set web1-monday --unset EXCLUDE_ALL_TASKS    # the Snapshot becomes an Image
  atoll resource show web1                                 # every view and the lineage
""",
)
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    envvar="ATOLL_CONFIG",
    help="Configuration file (default /etc/atoll/atoll.yaml; env ATOLL_CONFIG). Without one, the embedded "
    "default store is used.",
)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", help="Output format.")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.version_option(__version__, "--version", prog_name="atoll")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, output: str, verbose: int) -> None:
    """Atoll: objects, images, snapshots and volumes as one copy-on-write resource.

    An uploaded file is an Object; registering it makes it an Image (no data moves); an Image whose
    properties say EXCLUDE_ALL_TASKS is a Snapshot. A Volume is a read-write thin clone of any of them.
    REF arguments take an id, CONTAINER/NAME, or an image, snapshot or volume name.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="atoll: %(levelname)s: %(message)s", stream=sys.stderr)
    ctx.obj = Context(config_path=config_path, output=output)


@cli.command()
@click.pass_obj
def init(obj: Context) -> None:
    """Create the store and its catalog (idempotent; done automatically on first use)."""
    store = obj.store
    backend = store.init()
    data = {
        "store": str(store.config.store.path),
        "backend": backend,
        "catalog": store.catalog.url,
        "schema": store.catalog.version(),
    }
    if obj.json:
        import json

        click.echo(json.dumps(data))
    else:
        click.echo(f"store {data['store']} ready: backend {backend}, catalog schema {data['schema']}")


for module in (objects, images, imports, volumes, resources, customize, ganeti, identity):
    module.install(cli)


def _terminate(signum: int, _frame: Any) -> NoReturn:
    # SIGTERM unwinds like an exception, so pending operations roll back instead of leaking.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=argv, prog_name="atoll", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("atoll: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except AtollError as e:
        click.echo(f"atoll: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("atoll: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
