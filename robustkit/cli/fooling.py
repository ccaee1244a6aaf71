"""``robustkit evaluate --attack fooling``: a table of the classes sought, the fooling rate and a grid of the images."""

from __future__ import annotations

import json
from pathlib import Path

import click
from torch import nn

from robustkit import distributed
from robustkit.attack import Attack
from robustkit.cli.table import echo_table
from robustkit.data.base import ImageDataset
from robustkit.example_grid import save_fooling_grid
from robustkit.fooling_eval import evaluate_fooling
from robustkit.paths import home
from robustkit.predict import accuracy
from robustkit.records import append_record


def report_fooling(model: nn.Module, attack: Attack, data: ImageDataset, record: dict, *, n_samples: int, seed: int,
                   batch_size: int, output: Path | None, save_examples: Path | None) -> None:  # fmt: skip
    """Seek one fooling image per class, print per class (confidence verified by a fresh pass) and save the grid.

    ``record`` holds what every evaluation record says (model, checkpoint, attack, threat, run); the
    figures are ``FoolingReport.metrics`` over classes, the per-class ones in ``extra``.
    """
    report = evaluate_fooling(model, attack, tuple(data.info.input_shape), batch_size=batch_size)
    clean = accuracy(model, data.test.subset(n_samples, seed=seed), batch_size=batch_size)
    if not distributed.is_main():
        return
    names = data.info.class_names
    echo_table(["class", "confidence", "passed", "seconds"],
               [[names[c], f"{p:.4f}", "✓" if ok else "✗", "" if s != s else f"{s:.2f}"] for c, p, ok, s in
                zip(report.classes.tolist(), report.confidence.tolist(), report.passed.tolist(), report.seconds.tolist())])  # fmt: skip
    click.echo(f"fooling rate: {report.fooling_rate:.4f} ({int(report.passed.sum())} of {len(report.classes)} classes "
               f"at p ≥ {report.threshold:g}), {report.seconds_per_class:.3g} s per class, "
               f"unverified: {report.n_unverified}")  # fmt: skip
    folder = save_examples or home() / "fooling" / data.info.name
    stem = f"{record['model']}-{record['defense']}-{record['attack']}-p{report.threshold:g}-seed{seed}".replace("/", "_")
    grid = save_fooling_grid(folder / f"{stem}.png", report.images, report.classes, report.confidence, report.passed, names)
    click.echo(f"fooling images: {grid}")
    if output:
        figures = {"clean_accuracy": clean, **report.metrics(), "extra": json.dumps(report.extra(), sort_keys=True)}
        click.echo(f"record appended to {append_record(output, {**record, **figures, 'fooling_grid': str(grid)})}")
