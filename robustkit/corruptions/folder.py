"""A precomputed corruption set in CIFAR-10-C's layout, read instead of generating: ``<corruption>.npy``
(5·N × H × W × C uint8, severities 1…5 one after another, each over the test set in order) and
``labels.npy`` (5·N). The subset is the one ``IndexedSplit.subset`` takes of an N-image test split with
the same seed, so the clean and corrupted figures are of the same images. (ImageNet-C ships JPEG
folders, not this layout: convert it to .npy files first.)"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustkit.corruptions.catalog import UNAVAILABLE
from robustkit.corruptions.evaluate import CorruptionOptions
from robustkit.corruptions.report import CorruptionReport
from robustkit.errors import DataError
from robustkit.predict import predict
from robustkit.progress import progress_bar

SEVERITIES = 5


def folder_corruptions(folder: Path) -> list[str]:
    """The corruption files in ``folder`` (every ``.npy`` but ``labels.npy``), in name order."""
    folder = Path(folder)
    if not (folder / "labels.npy").is_file():
        raise DataError(f"{folder}: no labels.npy (a CIFAR-10-C folder holds <corruption>.npy files and labels.npy)")
    names = sorted(p.stem for p in folder.glob("*.npy") if p.stem != "labels")
    if not names:
        raise DataError(f"{folder}: no <corruption>.npy files beside labels.npy")
    return names


def chosen_positions(total: int, n_samples: int | None, seed: int) -> np.ndarray:
    """The positions ``IndexedSplit.choose`` keeps of a ``total``-image split (every one when n ≥ total)."""
    if n_samples is None or n_samples >= total:
        return np.arange(total)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=generator)[:n_samples].sort().values.numpy()


@torch.no_grad()
def evaluate_folder(
    model: nn.Module,
    folder: str | Path,
    n_samples: int | None = None,
    options: CorruptionOptions | None = None,
    *,
    clean: np.ndarray | None = None,
) -> CorruptionReport:
    """Accuracy of ``model`` on the folder's images at ``options.severities`` ("benchmark"/"all": 1…5) of
    ``options.names`` [every file]; ``clean``: the clean verdicts on the same subset, where known."""
    options, folder = options or CorruptionOptions(), Path(folder)
    names = list(options.names) if options.names else folder_corruptions(folder)
    labels = np.load(folder / "labels.npy")
    if len(labels) % SEVERITIES:
        raise DataError(f"{folder}/labels.npy: {len(labels)} labels are not {SEVERITIES} severities of one test set")
    total = len(labels) // SEVERITIES
    chosen = chosen_positions(total, n_samples, options.seed)
    steps = tuple(range(1, SEVERITIES + 1)) if isinstance(options.severities, str) else tuple(options.severities)
    device = next(model.parameters()).device if next(model.parameters(), None) is not None else torch.device("cpu")
    correct = np.zeros((len(names) * len(steps), len(chosen)), dtype=bool)
    seconds = np.zeros(len(correct))
    bar = progress_bar(total=len(correct), desc=folder.name, unit="corruption", enabled=options.progress, leave=False)
    for i, name in enumerate(names):
        path = folder / f"{name}.npy"
        if not path.is_file():
            raise DataError(f"{folder}: no {name}.npy")
        images = np.load(path, mmap_mode="r")
        if len(images) != len(labels) or images.ndim != 4:
            raise DataError(f"{path}: shape {images.shape}, expected ({len(labels)}, H, W, C) uint8")
        for j, severity in enumerate(steps):
            start, k = time.perf_counter(), i * len(steps) + j
            rows = (severity - 1) * total + chosen
            x = torch.from_numpy(np.ascontiguousarray(images[rows])).permute(0, 3, 1, 2).float().div(255).to(device)
            verdict = predict(model, x, batch_size=options.batch_size).cpu().numpy()
            correct[k] = verdict == labels[rows]
            seconds[k] = time.perf_counter() - start
            bar.update(1)
    bar.close()
    return CorruptionReport(
        names=[n for n in names for _ in steps],
        severities=[s for _ in names for s in steps],
        correct=correct,
        clean=clean,
        seconds=seconds,
        source=str(folder),
        unavailable={k: v for k, v in UNAVAILABLE.items() if k not in names},
    )
