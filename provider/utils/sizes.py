"""Parse and format sizes: ``512M``, ``10G``, ``1.5T``, plain bytes."""

from __future__ import annotations

import re

from provider.errors import UsageError

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)
MAX_SIZE = 1 << 60


def parse_size(text: str | int, *, default_unit: str = "") -> int:
    """Return ``text`` in bytes. Suffixes K, M, G, T, P (binary, optional ``iB``/``B``); no suffix = bytes.

    >>> parse_size("512M")
    536870912
    """
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE_RE.match(text)
        if not match:
            raise UsageError(
                "invalid size %(size)r: use a number of bytes or a number with K, M, G, T (e.g. 512M, 10G)",
                size=text,
            )
        number, unit = match.groups()
        unit = (unit or default_unit).upper()
        value = int(float(number) * _UNITS[unit])
        if "." in number and float(number) * _UNITS[unit] != value:
            raise UsageError("invalid size %(size)r: not a whole number of bytes", size=text)
    if value <= 0:
        raise UsageError("invalid size %(size)r: must be greater than zero", size=text)
    if value > MAX_SIZE:
        raise UsageError("invalid size %(size)r: larger than 1 EiB", size=text)
    return value


def format_size(n: int) -> str:
    """Human-readable binary size: ``format_size(10 << 30) == '10.0 GiB'``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
