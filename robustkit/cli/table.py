"""Plain aligned tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence

import click


def shown(value: float | None, spec: str = ".4f") -> str:
    """A figure as the terminal prints it: "—" where it does not apply (None or NaN, e.g. a success rate
    with no sample attacked), never "nan"."""
    return "—" if value is None or value != value else format(value, spec)


def echo_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print left-aligned columns separated by two spaces."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
