"""Canny edges as scikit-image's ``feature.canny`` computes them (σ = 1, low 0.1, high 0.2, no mask), for a
batch of grey images in NumPy/SciPy: normalised Gaussian smoothing (zeros outside), Sobel gradients,
non-maximum suppression interpolated between the two neighbours along the gradient, hysteresis by
8-connected components."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def _smooth(images: np.ndarray, sigma: float) -> np.ndarray:
    smoothed = ndi.gaussian_filter(images, sigma=(0, sigma, sigma), mode="constant", cval=0.0)
    bleed = ndi.gaussian_filter(np.ones(images.shape[1:]), sigma=sigma, mode="constant", cval=0.0)
    return smoothed / (bleed + np.finfo(float).eps)


def _sobel(images: np.ndarray, axis: int) -> np.ndarray:
    """SciPy's ``sobel`` of each image (the batch axis left alone): a difference along ``axis``, 1-2-1 across."""
    across = 3 - axis
    derivative = ndi.correlate1d(images, [-1, 0, 1], axis=axis, mode="reflect")
    return ndi.correlate1d(derivative, [1, 2, 1], axis=across, mode="reflect")


# (first neighbour, second neighbour, weight uses |j|/|i| (True) or |i|/|j|) for the + side of each sector;
# the − side reads the opposite neighbours.
_SECTORS = (
    (lambda i, j, ai, aj: ((i >= 0) & (j >= 0) | (i <= 0) & (j <= 0)) & (ai >= aj), (1, 0), (1, 1), True),
    (lambda i, j, ai, aj: ((i >= 0) & (j >= 0) | (i <= 0) & (j <= 0)) & (ai <= aj), (0, 1), (1, 1), False),
    (lambda i, j, ai, aj: ((i <= 0) & (j >= 0) | (i >= 0) & (j <= 0)) & (ai <= aj), (0, 1), (-1, 1), False),
    (lambda i, j, ai, aj: ((i <= 0) & (j >= 0) | (i >= 0) & (j <= 0)) & (ai >= aj), (-1, 0), (-1, 1), True),
)


def _shifted(a: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """a at (r + dr, c + dc) for every inner pixel (the border is never a local maximum)."""
    return np.roll(a, (-dr, -dc), axis=(1, 2))


def canny(images: np.ndarray, sigma: float = 1.0, low: float = 0.1, high: float = 0.2) -> np.ndarray:
    """Boolean edge maps (N×H×W) of float images in [0, 1]."""
    smoothed = _smooth(images, sigma)
    isobel, jsobel = _sobel(smoothed, 1), _sobel(smoothed, 2)
    ai, aj = np.abs(isobel), np.abs(jsobel)
    magnitude = np.hypot(isobel, jsobel)
    inner = np.zeros(images.shape[1:], dtype=bool)
    inner[1:-1, 1:-1] = True
    local = np.zeros(images.shape, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for select, first, second, j_over_i in _SECTORS:
            pts = select(isobel, jsobel, ai, aj) & inner
            w = aj / ai if j_over_i else ai / aj
            plus = _shifted(magnitude, *second) * w + _shifted(magnitude, *first) * (1 - w) <= magnitude
            minus = (
                _shifted(magnitude, -second[0], -second[1]) * w + _shifted(magnitude, -first[0], -first[1]) * (1 - w)
                <= magnitude
            )
            local[pts] = (plus & minus)[pts]
    weak, strong = local & (magnitude >= low), local & (magnitude >= high)
    edges = np.zeros(images.shape, dtype=bool)
    for k in range(len(images)):
        labels, count = ndi.label(weak[k], structure=np.ones((3, 3)))
        if count:
            keep = np.asarray(ndi.sum(strong[k], labels, np.arange(count + 1))) > 0
            keep[0] = False
            edges[k] = keep[labels]
    return edges
