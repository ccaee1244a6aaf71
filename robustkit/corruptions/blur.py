"""Blur corruptions: Gaussian, defocus (a disk), glass (local pixel swaps between two blurs), motion and zoom."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from robustkit.corruptions import filters
from robustkit.per_sample_random import SampleRandom


def gaussian_blur(x: Tensor, sigma: float, rng: SampleRandom, *, grey_rows_only: bool = False) -> Tensor:
    """scikit-image's ``gaussian`` (mode nearest, truncate 4). ``grey_rows_only``: MNIST-C calls it with
    ``multichannel=True`` on a 2-D grey image, which takes the columns for channels and blurs rows only."""
    return filters.gaussian(x, sigma, dims=(-2,) if grey_rows_only else (-2, -1)).clamp(0, 1)


def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """The references' ``disk``: a normalised aliased disk on a 17×17 grid (radius ≤ 8), smoothed by OpenCV's
    3×3 ``GaussianBlur`` at σ = ``alias_blur`` (its weights exp(−i²/2σ²), normalised; border reflect-101)."""
    half = 8 if radius <= 8 else int(radius)
    size = 3 if radius <= 8 else 5
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((grid[None, :] ** 2 + grid[:, None] ** 2) <= radius**2).double()
    disk = disk / disk.sum()
    i = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(i**2) / (2 * alias_blur**2))
    g = g / g.sum()
    smoothed = filters.correlate2d(disk[None, None], g[:, None] * g[None, :], "mirror")[0, 0]
    return smoothed.float()


def defocus_blur(x: Tensor, c: tuple[float, float], rng: SampleRandom) -> Tensor:
    """Every channel correlated with ``disk_kernel(radius, alias_blur)`` (OpenCV ``filter2D``, reflect-101)."""
    return filters.correlate2d(x, disk_kernel(*c), "mirror").clamp(0, 1)


def glass_blur(
    x: Tensor, c: tuple[float, int, int], rng: SampleRandom, *, coin: bool = False, grey_rows_only: bool = False
) -> Tensor:
    """Blur (σ), quantise to bytes, then ``iterations`` sweeps from the bottom-right corner swapping each
    pixel with one up to ``max_delta`` away (offsets in [−δ, δ−1], as NumPy's ``randint``), then blur again.
    The sweep is sequential as the reference's loop: each swap is one vectorised step over the batch.
    ``coin``: MNIST-C swaps each pixel only on a fair coin."""
    sigma, delta, iterations = c
    n, _, h, w = x.shape
    dims = (-2,) if grey_rows_only else (-2, -1)
    x = filters.to_bytes(filters.gaussian(x, sigma, dims=dims)) / 255
    positions = [(r, q) for r in range(h - delta, delta, -1) for q in range(w - delta, delta, -1)]
    shifts = (rng.randint(2 * delta, iterations, len(positions), 2) - delta).to(x.device)
    swaps = (rng.rand(iterations, len(positions)) < 0.5).to(x.device) if coin else None
    rows = torch.arange(n, device=x.device)
    for it in range(iterations):
        for k, (r, q) in enumerate(positions):
            r2, q2 = r + shifts[:, it, k, 1], q + shifts[:, it, k, 0]
            here, there = x[:, :, r, q].clone(), x[rows, :, r2, q2]
            if swaps is not None:
                there = torch.where(swaps[:, it, k, None], there, here)
            x[rows, :, r2, q2] = here
            x[:, :, r, q] = there
    return filters.gaussian(x, sigma, dims=dims).clamp(0, 1)


def motion_blur(x: Tensor, c: tuple[float, float], rng: SampleRandom) -> Tensor:
    """ImageMagick's motion blur (radius, σ) at an angle uniform in [−45°, 45°) per sample."""
    angle = rng.rand().to(x.device) * 90 - 45
    return filters.motion_blur(x, c[0], c[1], angle).clamp(0, 1)


def zoom_blur(x: Tensor, factors: tuple[float, ...], rng: SampleRandom) -> Tensor:
    """The mean of the image and its centre zoomed by each factor (``clipped_zoom``)."""
    out = x.clone()
    for factor in factors:
        out = out + filters.clipped_zoom(x, float(factor))
    return (out / (len(factors) + 1)).clamp(0, 1)


def zoom_factors(stop: float, step: float) -> tuple[float, ...]:
    """``np.arange(1, stop, step)`` as the references write the zoom lists (floating-point ends included)."""
    return tuple(float(v) for v in np.arange(1, stop, step))
