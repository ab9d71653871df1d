"""bench/RESULTS.md: each benchmark owns one section, under its own ``## `` heading."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def write_section(heading: str, text: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section that starts with ``heading``, leaving the other sections alone."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    start = old.find(heading)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(heading))
        new = old[:start] + text + (old[end:] if end >= 0 else "")
    path.write_text(new.rstrip("\n") + "\n")


def publish(heading: str, text: str, write: bool) -> int:
    """Print a benchmark's section and, with ``write``, record it in RESULTS.md; the exit status (0)."""
    print(text)
    if write:
        write_section(heading, text)
    return 0
