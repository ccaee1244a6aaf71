"""MNIST-C's own corruptions of grey digits: affine moves (scikit-image ``warp``, bilinear, zeros outside),
inverted stripes, drawn lines and zigzags, and Canny edges."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from robustkit.corruptions import filters
from robustkit.per_sample_random import SampleRandom


def _warp(x: Tensor, linear: Tensor, translation: Tensor | None = None) -> Tensor:
    """scikit-image's ``warp(x, inverse_map=A)`` with A's linear part ``linear`` (N×2×2) moved to keep the
    centre ((side − 1)/2) fixed, plus ``translation`` (N×2, columns then rows)."""
    h, w = x.shape[-2:]
    centre = torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=torch.float64)
    fixed = centre - (linear * centre[None, None, :]).sum(-1)
    offset = fixed + (translation if translation is not None else 0)
    matrices = torch.cat([linear, offset[:, :, None]], dim=2)
    rows, cols = filters.affine_grid(matrices, h, w)
    return filters.bilinear(x, rows.to(x.device), cols.to(x.device), "constant").clamp(0, 1)


def _signs(rng: SampleRandom, *shape: int) -> Tensor:
    return rng.randint(2, *shape).double() * 2 - 1


def shear(x: Tensor, amount: float, rng: SampleRandom) -> Tensor:
    """AffineTransform(shear=±amount) about the centre: [[1, −sin s], [0, cos s]], the sign per sample."""
    s = amount * _signs(rng)
    linear = torch.zeros(len(s), 2, 2, dtype=torch.float64)
    linear[:, 0, 0], linear[:, 0, 1], linear[:, 1, 1] = 1.0, -torch.sin(s), torch.cos(s)
    return _warp(x, linear)


def rotate(x: Tensor, angle: float, rng: SampleRandom) -> Tensor:
    """A rotation by ±``angle`` radians about the centre, the sign per sample."""
    a = angle * _signs(rng)
    linear = torch.stack([torch.stack([a.cos(), -a.sin()], -1), torch.stack([a.sin(), a.cos()], -1)], 1)
    return _warp(x, linear)


def scale(x: Tensor, factor: float, rng: SampleRandom) -> Tensor:
    """The inverse map scaled by ``factor`` (1/0.7 at MNIST-C's severity: the digit shrinks to 0.7)."""
    linear = torch.eye(2, dtype=torch.float64).expand(len(rng), 2, 2) * factor
    return _warp(x, linear)


def translate(x: Tensor, pixels: float, rng: SampleRandom) -> Tensor:
    """A shift by ±``pixels`` along each axis, the signs per sample."""
    linear = torch.eye(2, dtype=torch.float64).expand(len(rng), 2, 2)
    return _warp(x, linear, pixels * _signs(rng, 2))


def stripe(x: Tensor, _: object, rng: SampleRandom) -> Tensor:
    """The left and right quarters (7 of 28 columns each) inverted."""
    w = x.shape[-1]
    cols = torch.arange(w, device=x.device)
    edge = (cols < w // 4) | (cols >= w - w // 4)
    return torch.where(edge, 1 - x, x)


def line_from_points(c0: float, r0: float, c1: float, r1: float, size: int = 28) -> np.ndarray:
    """MNIST-C's line: brightness log(1 − d/2.3) + 1 at row distance d from the line through (c0, r0), (c1, r1),
    zero left of ⌊c0⌋ and from ⌈c1⌉ on (Python slice bounds, negative ones counting from the end)."""
    if c1 == c0:
        return np.zeros((size, size))
    cc, rr = np.meshgrid(np.linspace(0, size - 1, size), np.linspace(0, size - 1, size), sparse=True)
    slope = (r1 - r0) / (c1 - c0)
    dist = np.clip(np.abs(rr - (slope * (cc - c0) + r0)), 0, 2.3 - 1e-10)
    line = np.clip(np.log(1 - dist / 2.3) + 1, 0, 1)
    line[:, : int(np.floor(c0))] = 0
    line[:, int(np.ceil(c1)) :] = 0
    return np.clip(line, 0, 1)


def dotted_line(x: Tensor, _: object, rng: SampleRandom) -> Tensor:
    """A line between random rows at the left and right edges, columns 0–1, 4–5, … blanked."""
    size = x.shape[-1]
    ends = rng.randint(size - 1, 2).numpy()
    lines = np.stack([line_from_points(0, r0, size - 1, r1, size) for r0, r1 in ends])
    for start in range(0, size, 4):
        lines[:, :, start : start + 2] = 0
    return (x + torch.from_numpy(lines).to(x.device, x.dtype)[:, None]).clamp(0, 1)


def zigzag_lines(r0: int, r1: int, size: int = 28) -> np.ndarray:
    """MNIST-C's zigzag from column 2 (row r0) toward column 25 (row r1): teeth 2 px long and 2 px high."""
    a = b = 2.0
    c0, c1 = 2, 25
    theta = np.arctan((r1 - r0) / (c1 - c0))
    d = (c1 - c0) / np.cos(theta)
    points = [(0.0, 0.0)]
    for i in range(int((d - a) // (2 * a)) + 1):
        r_i = (-1) ** i * b
        points.append(((2 * i + 1) * a, r_i))
    max_c = (2 * a) * (d // (2 * a))
    if d != max_c:
        points.append((d, r_i / (2 * (d - max_c))))
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    cs, rs = rotation.dot(np.array(points).T)
    cs, rs = cs + c0, rs + r0
    return np.stack([line_from_points(cs[i - 1], rs[i - 1], cs[i], rs[i], size) for i in range(1, len(cs))])


def zigzag(x: Tensor, _: object, rng: SampleRandom) -> Tensor:
    """A zigzag added segment by segment, clipped after each (as the reference)."""
    starts, turns = rng.randints((27, ()), (10, ()))
    out = x.double().cpu().numpy()[:, 0]
    for k, (r0, turn) in enumerate(zip(starts.tolist(), turns.tolist(), strict=False)):
        for segment in zigzag_lines(r0, r0 + turn - 5, x.shape[-1]):
            out[k] = np.clip(out[k] + segment, 0, 1)
    return torch.from_numpy(out[:, None]).to(x.device, x.dtype)


def canny_edges(x: Tensor, _: object, rng: SampleRandom) -> Tensor:
    """scikit-image's ``feature.canny`` (σ = 1, thresholds 0.1 and 0.2) on each image, as 0/1."""
    from robustkit.corruptions.canny import canny

    edges = canny(x[:, 0].double().cpu().numpy())
    return torch.from_numpy(edges.astype(np.float32))[:, None].to(x.device, x.dtype)
