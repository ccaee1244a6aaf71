"""Filters and resampling the corruptions share, in torch on N×C×H×W batches, with SciPy's, OpenCV's and
scikit-image's boundary rules named as the references use them (so a kernel's edge behaves as theirs).

``reflect`` is SciPy's half-sample mirror (d c b a | a b c d), ``mirror`` OpenCV's BORDER_REFLECT_101
(d c b | a b c d), ``nearest`` repeats the edge, ``constant`` reads zeros outside.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def fold(index: Tensor, n: int, mode: str) -> Tensor:
    """Integer positions, any distance outside 0…n−1, mapped in by ``mode``; −1 marks a zero (``constant``)."""
    if mode == "nearest":
        return index.clamp(0, n - 1)
    if mode == "constant":
        return torch.where((index >= 0) & (index < n), index, torch.full_like(index, -1))
    if mode == "reflect":
        i = index % (2 * n)
        return torch.where(i >= n, 2 * n - 1 - i, i)
    if mode == "mirror":
        if n == 1:
            return torch.zeros_like(index)
        i = index % (2 * (n - 1))
        return torch.where(i >= n, 2 * (n - 1) - i, i)
    raise ValueError(f"unknown boundary mode {mode}")


def _take(x: Tensor, dim: int, index: Tensor) -> Tensor:
    """``x`` indexed along ``dim`` by folded positions, zeros where the position is −1."""
    picked = x.index_select(dim, index.clamp(min=0))
    if bool((index < 0).any()):
        shape = [1] * x.ndim
        shape[dim] = len(index)
        picked = picked * (index >= 0).to(x.dtype).view(shape)
    return picked


def correlate_axis(x: Tensor, weights: Tensor, dim: int, mode: str) -> Tensor:
    """1-D correlation along ``dim`` with an odd-length kernel centred on each pixel."""
    n, radius = x.shape[dim], (len(weights) - 1) // 2
    padded = _take(x, dim, fold(torch.arange(-radius, n + radius, device=x.device), n, mode))
    out = torch.zeros_like(x)
    for k, w in enumerate(weights.tolist()):
        out = out + w * padded.narrow(dim, k, n)
    return out


def gaussian_weights(sigma: float, truncate: float) -> Tensor:
    """SciPy's ``gaussian_filter`` kernel: radius int(truncate·σ + 0.5), normalised to sum 1."""
    radius = int(truncate * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def gaussian(
    x: Tensor, sigma: float, *, mode: str = "nearest", truncate: float = 4.0, dims: tuple[int, ...] = (-2, -1)
) -> Tensor:
    """scikit-image's ``filters.gaussian`` (SciPy's separable filter) over ``dims``; σ = 0 leaves ``x`` as it is."""
    if sigma <= 0:
        return x
    w = gaussian_weights(sigma, truncate)
    for dim in dims:
        x = correlate_axis(x, w, dim % x.ndim, mode)
    return x


def correlate2d(x: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """OpenCV's ``filter2D`` (a correlation) of every channel with one odd-sized kernel."""
    kh, kw = kernel.shape
    h, w = x.shape[-2:]
    rows = fold(torch.arange(-(kh // 2), h + kh // 2, device=x.device), h, mode)
    cols = fold(torch.arange(-(kw // 2), w + kw // 2, device=x.device), w, mode)
    padded = _take(_take(x, -2 % x.ndim, rows), -1 % x.ndim, cols)
    c = x.shape[1]
    weight = kernel.to(x.dtype).to(x.device).expand(c, 1, kh, kw)
    return F.conv2d(padded, weight, groups=c)


def bilinear(x: Tensor, rows: Tensor, cols: Tensor, mode: str) -> Tensor:
    """``x`` (N×C×H×W) read at real positions ``rows``, ``cols`` (N×H'×W'), linearly between the four
    neighbours, each neighbour's integer position folded by ``mode`` (SciPy ``map_coordinates`` order 1)."""
    n, c, h, w = x.shape
    r0, c0 = rows.floor(), cols.floor()
    fr, fc = (rows - r0).to(x.dtype), (cols - c0).to(x.dtype)
    flat = x.reshape(n, c, h * w)
    out = torch.zeros(n, c, *rows.shape[1:], dtype=x.dtype, device=x.device)
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            ri, ci = fold(r0.long() + dr, h, mode), fold(c0.long() + dc, w, mode)
            inside = ((ri >= 0) & (ci >= 0)).to(x.dtype)
            where = (ri.clamp(min=0) * w + ci.clamp(min=0)).reshape(n, 1, -1).expand(n, c, -1)
            value = flat.gather(2, where).reshape(out.shape)
            out = out + value * (wr * wc * inside)[:, None]
    return out


def affine_grid(matrices: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
    """Rows and columns read for each output pixel under per-sample 2×3 matrices taking an output (col, row)
    to the input (col, row) — scikit-image's ``inverse_map`` convention."""
    rr, cc = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    m = matrices.double()
    cols = m[:, 0, 0, None, None] * cc + m[:, 0, 1, None, None] * rr + m[:, 0, 2, None, None]
    rows = m[:, 1, 0, None, None] * cc + m[:, 1, 1, None, None] * rr + m[:, 1, 2, None, None]
    return rows, cols


def zoom_matrix(size: int, factor: float) -> Tensor:
    """The h×h linear map of the references' ``clipped_zoom`` along one axis: the centre ⌈h/z⌉ pixels
    enlarged by SciPy's ``zoom`` (order 1, corners aligned) and the middle h kept."""
    crop = math.ceil(size / factor)
    top = (size - crop) // 2
    out = round(crop * factor)
    positions = np.arange(out) * ((crop - 1) / (out - 1) if out > 1 else 0.0)
    trim = (out - size) // 2
    positions = positions[trim : trim + size]
    matrix = torch.zeros(size, size, dtype=torch.float64)
    low = np.floor(positions).astype(int)
    frac = positions - low
    for i, (lo, f) in enumerate(zip(low, frac, strict=False)):
        matrix[i, top + lo] += 1 - f
        if f > 0:
            matrix[i, top + lo + 1] += f
    return matrix


def clipped_zoom(x: Tensor, factor: float) -> Tensor:
    """Zoom into the centre of every H×W plane by ``factor`` (separable: rows then columns)."""
    rows = zoom_matrix(x.shape[-2], factor).to(x.device)
    cols = zoom_matrix(x.shape[-1], factor).to(x.device)
    return rows.to(x.dtype) @ x @ cols.to(x.dtype).T


def motion_kernel(radius: float, sigma: float, angle: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ImageMagick's ``MotionBlurImage``: 2⌈radius⌉+1 one-sided Gaussian weights and, per sample, the integer
    (column, row) offset of each tap along ``angle`` degrees (rounded as its ``ceil(v − 0.5)``)."""
    width = int(2 * math.ceil(radius) + 1)
    i = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-(i**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    rad = angle.double() * math.pi / 180
    px, py = width * torch.sin(rad), width * torch.cos(rad)
    norm = torch.hypot(px, py)
    dcol = torch.ceil(i[None, :] * py[:, None] / norm[:, None] - 0.5).long()
    drow = torch.ceil(i[None, :] * px[:, None] / norm[:, None] - 0.5).long()
    return weights, dcol, drow


def motion_blur(x: Tensor, radius: float, sigma: float, angle: Tensor) -> Tensor:
    """Per-sample motion blur at ``angle`` (N degrees), edge pixels repeated (ImageMagick's virtual pixels)."""
    n, c, h, w = x.shape
    weights, dcol, drow = motion_kernel(radius, sigma, angle.to(x.device))
    rr = torch.arange(h, device=x.device)[None, :, None]
    cc = torch.arange(w, device=x.device)[None, None, :]
    flat = x.reshape(n, c, h * w)
    out = torch.zeros_like(x)
    for k, weight in enumerate(weights.tolist()):
        rows = (rr + drow[:, k, None, None].to(x.device)).clamp(0, h - 1)
        cols = (cc + dcol[:, k, None, None].to(x.device)).clamp(0, w - 1)
        where = (rows * w + cols).reshape(n, 1, -1).expand(n, c, -1)
        out = out + weight * flat.gather(2, where).reshape(x.shape)
    return out


def to_bytes(x: Tensor) -> Tensor:
    """[0, 1] → 0…255 as the references' ``np.uint8(v * 255)``: truncated after clipping (1e-4 of a level
    up first, so an exact k/255 stored in float32 stays k rather than k − 1)."""
    return (x.clamp(0, 1) * 255 + 1e-4).floor()
