"""Weather corruptions: fog (a diamond-square plasma), snow (zoomed, thresholded, motion-blurred flakes) and
MNIST-C's mud spatter."""

from __future__ import annotations

import torch
from torch import Tensor

from robustkit.corruptions import filters
from robustkit.per_sample_random import SampleRandom


def plasma_fractal(rng: SampleRandom, mapsize: int, wibbledecay: float) -> Tensor:
    """The references' diamond-square heightmap (N×S×S in [0, 1]), for every sample at once."""
    n = len(rng)
    maps = torch.zeros(
        n, mapsize, mapsize
    )  # float32: the [0, 1] map loses nothing, at half the memory traffic of float64
    step, wibble = mapsize, 100.0

    def wibbled_mean(total: Tensor) -> Tensor:
        return total / 4 + wibble * (rng.rand(*total.shape[1:]) * 2 - 1) * wibble

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:mapsize:step, 0:mapsize:step]
        square = corners + corners.roll(-1, dims=1)
        square = square + square.roll(-1, dims=2)
        maps[:, half:mapsize:step, half:mapsize:step] = wibbled_mean(square)
        centres = maps[:, half:mapsize:step, half:mapsize:step]
        corners = maps[:, 0:mapsize:step, 0:mapsize:step]
        left = centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        maps[:, 0:mapsize:step, half:mapsize:step] = wibbled_mean(left)
        top = centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        maps[:, half:mapsize:step, 0:mapsize:step] = wibbled_mean(top)
        step //= 2
        wibble /= wibbledecay
    maps = maps - maps.amin(dim=(1, 2), keepdim=True)
    return maps / maps.amax(dim=(1, 2), keepdim=True)


def fog(x: Tensor, c: tuple[float, float], rng: SampleRandom, *, mapsize: int = 32) -> Tensor:
    """x + t·plasma, rescaled by max/(max + t) (MNIST-C draws a 256² map and crops it)."""
    thickness, decay = c
    h, w = x.shape[-2:]
    plasma = plasma_fractal(rng, mapsize, decay)[:, None, :h, :w].to(x.device, x.dtype)
    top = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x + thickness * plasma) * top / (top + thickness)).clamp(0, 1)


GREY_WEIGHTS = (0.299, 0.587, 0.114)  # OpenCV's RGB2GRAY


def snow(x: Tensor, c: tuple, rng: SampleRandom) -> Tensor:
    """CIFAR-10-C's snow: a N(μ, σ) layer zoomed, thresholded, stored as bytes, motion-blurred at an angle
    in [−135°, −45°), added with its 180° turn to an image brightened toward grey·1.5 + 0.5."""
    loc, scale, zoom, threshold, radius, sigma, keep = c
    _, channels, h, w = x.shape
    layer = (loc + scale * rng.randn(1, h, w).double()).to(x.device)
    layer = filters.clipped_zoom(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    layer = filters.to_bytes(layer) / 255
    angle = rng.rand().to(x.device) * 90 - 135
    layer = (filters.motion_blur(layer, radius, sigma, angle) * 255).round() / 255  # PNG round trip
    layer = layer.to(x.dtype)
    if channels == 3:
        grey = sum(wt * x[:, i : i + 1] for i, wt in enumerate(GREY_WEIGHTS))
    else:
        grey = x
    x = keep * x + (1 - keep) * torch.maximum(x, grey * 1.5 + 0.5)
    return (x + layer + layer.flip(-1, -2)).clamp(0, 1)


def spatter(x: Tensor, c: tuple, rng: SampleRandom) -> Tensor:
    """MNIST-C's spatter (mud at every severity): a N(μ, σ) layer blurred, thresholded, its mask blurred again
    and kept where ≥ 0.8; there the image becomes mud grey 63/255."""
    loc, scale, sigma, threshold, mask_sigma, _ = c
    liquid = filters.gaussian(loc + scale * rng.randn(*x.shape[1:]).double().to(x.device), sigma)
    mask = filters.gaussian((liquid > threshold).double(), mask_sigma)
    mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask).to(x.dtype)
    return (x * (1 - mask) + 63 / 255 * mask).clamp(0, 1)
