"""Options several commands share, declared once; what they need of torch is imported when they run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from robustkit.registry import DEFAULT_DATASET, DEFENSES

if TYPE_CHECKING:
    from robustkit.data import ImageDataset
    from robustkit.defense import Defense


def dataset_options(command: Callable) -> Callable:
    """``--dataset``, ``--data-dir``, ``--download``, and for data sets that stream from image files
    (imagefolder, imagenet) ``--image-size`` and ``--workers``."""
    command = click.option(
        "--workers",
        type=click.IntRange(min=0),
        help="Processes decoding images of a data set that streams from files (imagefolder, imagenet) "
        "[one per core, at most 8; 0: in this process].",
    )(command)
    command = click.option(
        "--image-size",
        type=click.IntRange(min=8),
        help="Side in px that a resizing data set crops to (imagefolder [64], imagenet [224]).",
    )(command)
    command = click.option("--download", is_flag=True, help="Fetch the data set if missing (needs internet).")(command)
    command = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Folder holding the data set (else $ROBUSTKIT_DATA, the cache, system folders).",
    )(command)
    return click.option("--dataset", default=DEFAULT_DATASET, show_default=True, help="Registered data set name.")(
        command
    )


def threads_option(command: Callable) -> Callable:
    """``--threads N``: PyTorch's CPU threads, set as the option is parsed (default: ``$OMP_NUM_THREADS``, else every core).

    On a machine shared with other jobs, more threads than free cores make every thread wait for the
    others at each operation; one thread per free core is then much faster.
    """

    def apply(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
        if value is not None:
            import torch

            torch.set_num_threads(value)

    return click.option(
        "--threads",
        type=click.IntRange(min=1),
        expose_value=False,
        callback=apply,
        help="CPU threads for PyTorch [default: $OMP_NUM_THREADS, else all cores]; on a shared machine, the free cores.",
    )(command)


def runtime_options(command: Callable) -> Callable:
    """``--device``, ``--seed`` and ``--threads``."""
    command = threads_option(command)
    command = click.option("--seed", type=int, default=0, show_default=True, help="Seed for every random choice.")(
        command
    )
    return click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")(command)


def open_dataset(
    dataset: str, data_dir: Path | None, download: bool, image_size: int | None = None, workers: int | None = None
) -> ImageDataset:
    """The data set; a setting it does not take (``--image-size`` on fashion-mnist) is a one-line error."""
    from robustkit.data import get_dataset

    return get_dataset(
        dataset, as_flags=True, data_dir=data_dir, download=download or None, image_size=image_size, workers=workers
    )


def build_defense(name: str, *, eps: str | None, norm: str, channels: int, **settings) -> Defense | None:
    """``none`` → None; otherwise the registered defense, ε defaulting to the field's usual budget."""
    from robustkit.threats import default_eps, parse_eps

    if name.lower() == "none":
        return None
    budget = parse_eps(eps) if eps is not None else default_eps(norm, channels)
    return DEFENSES.build(name, eps=budget, norm=norm, **settings)
