"""Options several commands share, declared once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from robustkit.data import DEFAULT_DATASET, ImageDataset, get_dataset


def dataset_options(command: Callable) -> Callable:
    """``--dataset``, ``--data-dir`` and ``--download``."""
    command = click.option("--download", is_flag=True, help="Fetch the data set if missing (needs internet).")(command)
    command = click.option(
        "--data-dir", type=click.Path(file_okay=False, path_type=Path),
        help="Folder holding the data set (else $ROBUSTKIT_DATA, the cache, system folders).",
    )(command)  # fmt: skip
    return click.option("--dataset", default=DEFAULT_DATASET, show_default=True, help="Registered data set name.")(command)


def runtime_options(command: Callable) -> Callable:
    """``--device`` and ``--seed``."""
    command = click.option("--seed", type=int, default=0, show_default=True, help="Seed for every random choice.")(command)
    return click.option(
        "--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps."
    )(command)


def open_dataset(dataset: str, data_dir: Path | None, download: bool) -> ImageDataset:
    return get_dataset(dataset, data_dir=data_dir, download=download or None)
