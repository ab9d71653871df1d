"""What every CLI command shares: the context object, output formatting, size parsing, progress."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import click

from provider import config as config_mod
from provider.errors import AtollError
from provider.utils.sizes import format_size, parse_size

if TYPE_CHECKING:  # the catalog (SQLAlchemy) loads when a command opens the store, not before
    from provider.model import Resource
    from provider.services import Store


@dataclass
class Context:
    config_path: str | None
    output: str
    _store: Store | None = field(default=None, repr=False)

    @property
    def config(self) -> config_mod.Config:
        return config_mod.load(self.config_path)

    @property
    def store(self) -> Store:
        if self._store is None:
            from provider.services import Store

            self._store = Store.open(self.config)
        return self._store

    @property
    def json(self) -> bool:
        return self.output == "json"


_pass_context = click.make_pass_decorator(Context)


def _set_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(Context).output = value


F = TypeVar("F", bound=Callable[..., Any])


def pass_ctx(fn: F) -> F:
    """Pass the Context, and accept ``-o table|json`` after the subcommand too."""
    option = click.option(
        "-o",
        "--output",
        type=click.Choice(["table", "json"]),
        default=None,
        expose_value=False,
        callback=_set_output,
        help="Output format.",
    )
    return option(_pass_context(fn))  # type: ignore[return-value]


class SizeType(click.ParamType):
    """SIZE: bytes, or a number with K, M, G, T (binary), e.g. 512M, 10G."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except AtollError as e:
            self.fail(str(e), param, ctx)


SIZE = SizeType()


def emit(ctx: Context, data: Any, table: Callable[[], None]) -> None:
    if ctx.json:
        click.echo(json.dumps(data, indent=None, sort_keys=False))
    else:
        table()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            click.echo("  ".join("-" * w for w in widths))


def resource_rows(items: Sequence[Resource]) -> list[list[Any]]:
    return [[r.id, r.kind, r.name, format_size(r.size), r.mode, r.parent or "-"] for r in items]


def print_resources(ctx: Context, items: Sequence[Resource]) -> None:
    emit(
        ctx,
        [r.to_dict() for r in items],
        lambda: print_table(["ID", "KIND", "NAME", "SIZE", "MODE", "PARENT"], resource_rows(items)),
    )


def print_resource(ctx: Context, data: dict[str, Any] | Resource) -> None:
    if not isinstance(data, dict):  # a Resource
        data = data.to_dict()

    def table() -> None:
        for key, value in data.items():
            if key in ("lineage", "children") and isinstance(value, list):
                arrow = " <- " if key == "lineage" else ", "
                value = arrow.join(f"{r['name']} ({r['kind']} {r['id'][:8]})" for r in value) or "-"
            elif isinstance(value, dict | list):
                value = json.dumps(value, sort_keys=True) if value else "-"
            if key == "size" and isinstance(value, int):
                value = f"{value} ({format_size(value)})"
            click.echo(f"{key + ':':<16} {value if value is not None else '-'}")

    emit(ctx, data, table)


@contextmanager
def progress(total: int | None, desc: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm  # here: a command without a progress bar starts without it

    # No tqdm monitor thread: a SIGTERM the kernel gave that thread would leave the main thread blocked
    # in a read of stdin, never running the handler that rolls the operation back.
    tqdm.monitor_interval = 0
    with tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=None,
        leave=False,
    ) as bar:

        def advance(n: int) -> None:
            bar.update(n)

        yield advance


class ProgressWriter(io.RawIOBase):
    """A write-only stream in front of ``out`` that reports each write to ``advance`` (download bars)."""

    def __init__(self, out: BinaryIO, advance: Callable[[int], None]) -> None:
        super().__init__()
        self.out = out
        self.advance = advance

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.out.write(data)
        size = memoryview(data).nbytes
        self.advance(size)
        return size

    def flush(self) -> None:
        self.out.flush()

    # A download into a regular file skips holes (seek) rather than writing zeros: let it, and count them.
    def fileno(self) -> int:
        return self.out.fileno()

    def seekable(self) -> bool:
        return self.out.seekable()

    def tell(self) -> int:
        return self.out.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        before = self.out.tell()
        pos = self.out.seek(offset, whence)
        self.advance(max(0, pos - before))
        return pos

    def truncate(self, size: int | None = None) -> int:
        return self.out.truncate(size)


def pairs_option(flag: str, metavar: str, help: str) -> Callable[[Any], Any]:
    return click.option(flag, metavar=metavar, multiple=True, help=help)
