"""``robustkit evaluate --attack fooling``: a table of the classes sought, the fooling rate and a grid of the images."""

from __future__ import annotations

from pathlib import Path

import click

from robustkit.cli.table import echo_table, shown, with_interval
from robustkit.evaluation.api import Report
from robustkit.paths import home
from robustkit.results.example_grid import save_fooling_grid
from robustkit.results.intervals import row_interval


def report_fooling(report: Report, save_examples: Path | None) -> Path:
    """Print per class sought (confidence verified by a fresh pass) and the fooling rate; save the grid, return its path."""
    fooled, record, names = report.outcome, report.record, report.class_names
    echo_table(
        ["class", "confidence", "passed", "seconds"],
        [
            [names[c], f"{p:.4f}", "✓" if ok else "✗", shown(s, ".3g")]
            for c, p, ok, s in zip(
                fooled.classes.tolist(),
                fooled.confidence.tolist(),
                fooled.passed.tolist(),
                fooled.seconds.tolist(),
                strict=True,
            )
        ],
    )
    rate = with_interval(fooled.fooling_rate, row_interval(report.figures, "attack_success_rate"))
    click.echo(
        f"fooling rate: {rate} (95 % CI; {int(fooled.passed.sum())} of {len(fooled.classes)} classes "
        f"at p ≥ {fooled.threshold:g}), {shown(fooled.seconds_per_class, '.3g')} s per class "
        f"({shown(fooled.total_seconds, '.3g')} s in all), "
        f"unverified: {fooled.n_unverified}"
    )
    folder = save_examples or home() / "fooling" / record["dataset"]
    stem = (
        f"{record['model']}-{record['defense']}-{record['attack']}-p{fooled.threshold:g}-seed{record['seed']}".replace(
            "/", "_"
        )
    )
    grid = save_fooling_grid(
        folder / f"{stem}.png", fooled.images, fooled.classes, fooled.confidence, fooled.passed, names
    )
    click.echo(f"fooling images: {grid}")
    return grid
