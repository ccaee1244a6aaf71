"""Plain aligned tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from robustkit.results.intervals import Interval  # imports NumPy: not at the CLI's start


def shown(value: float | None, spec: str = ".4f") -> str:
    """A figure as the terminal prints it: "—" where it does not apply (None or NaN, e.g. a success rate
    with no sample attacked), never "nan"."""
    return "—" if value is None or value != value else format(value, spec)


def with_interval(value: float | None, interval: Interval, spec: str = ".4f") -> str:
    """A proportion and its 95 % interval as a table prints them: ``0.0267 [0.0116, 0.0518]``; the figure
    alone where there is no interval, "—" where the figure does not apply."""
    return f"{shown(value, spec)} {interval.text(spec)}".rstrip()


def echo_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print left-aligned columns separated by two spaces."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
