"""Accuracy under corruption: each (corruption, severity) applied to the evaluation images, verdicts by
``predict`` (eval mode, the model's own precision), one bit per image and pair.

Randomness belongs to the sample: the pair's draws come from (seed, corruption, severity, the image's
index), so an image is corrupted the same alone or in any batch. Every corrupted image is stored as
bytes as the references store theirs (``np.uint8(v · 255)``) before the model sees it.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from robustkit.corruptions.catalog import Corruption, benchmark_name, select, unavailable
from robustkit.corruptions.filters import to_bytes
from robustkit.corruptions.report import CorruptionReport
from robustkit.per_sample_random import SampleRandom, mix_int
from robustkit.predict import predict
from robustkit.progress import progress_bar


def pair_seed(seed: int, name: str, severity: int) -> int:
    """The stream of one (corruption, severity): independent of the others, fixed by the run's seed."""
    return mix_int(mix_int(seed) ^ zlib.crc32(f"{name}/{severity}".encode())) & ((1 << 62) - 1)


def corrupt(
    images: Tensor, corruption: Corruption, severity: int, *, seed: int = 0, index: Tensor | None = None
) -> Tensor:
    """``images`` (N×C×H×W in [0, 1]) under ``corruption`` at ``severity``, as bytes / 255; ``index``: each
    image's position in the evaluation set [0…N−1], which with the seed fixes its draws. Leaves ``images`` as is."""
    index = torch.arange(len(images), device=images.device) if index is None else index.to(images.device)
    rng = SampleRandom(pair_seed(seed, corruption.name, severity), index)
    out = corruption.apply(images.clone(), corruption.parameter(severity), rng)
    return to_bytes(out) / 255


@dataclass(frozen=True, kw_only=True)
class CorruptionOptions:
    """Which corruptions and severities (``select``), the seed, the batch size and whether to show progress."""

    names: tuple[str, ...] | None = None
    severities: str | tuple[int, ...] = "benchmark"
    seed: int = 0
    batch_size: int = 256
    progress: bool = True


@torch.no_grad()
def evaluate_corruptions(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    options: CorruptionOptions | None = None,
    *,
    index: Tensor | None = None,
) -> CorruptionReport:
    """Clean and corrupted accuracy of ``model`` on ``images`` (N×C×H×W in [0, 1]) with ``labels`` (N).

    The corruption set follows the channels: CIFAR-10-C's for colour, MNIST-C's for grey (``catalog``).
    """
    options = options or CorruptionOptions()
    pairs = select(images.shape[1], options.names, options.severities)
    index = torch.arange(len(images)) if index is None else index.cpu()
    clean = predict(model, images, batch_size=options.batch_size).cpu() == labels.cpu()
    correct = torch.zeros(len(pairs), len(images), dtype=torch.bool)
    seconds = np.zeros(len(pairs))
    bar = progress_bar(
        total=len(pairs),
        desc=f"{benchmark_name(images.shape[1])}",
        unit="corruption",
        enabled=options.progress,
        leave=False,
    )
    for k, (corruption, severity) in enumerate(pairs):
        start = time.perf_counter()
        for lo in range(0, len(images), options.batch_size):
            x = images[lo : lo + options.batch_size]
            bad = corrupt(x, corruption, severity, seed=options.seed, index=index[lo : lo + options.batch_size])
            verdict = predict(model, bad, batch_size=options.batch_size).cpu()
            correct[k, lo : lo + len(x)] = verdict == labels[lo : lo + len(x)].cpu()
        seconds[k] = time.perf_counter() - start
        bar.update(1)
        bar.set_postfix(corruption=corruption.name, accuracy=f"{correct[k].float().mean():.2f}")
    bar.close()
    return CorruptionReport(
        names=[c.name for c, _ in pairs],
        severities=[s for _, s in pairs],
        correct=correct.numpy(),
        clean=clean.numpy(),
        seconds=seconds,
        source=benchmark_name(images.shape[1]),
        unavailable=unavailable(images.shape[1]),
    )
