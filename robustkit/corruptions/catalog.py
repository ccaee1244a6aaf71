"""The corruption sets and their published parameters, one entry per corruption and severity.

Colour images get CIFAR-10-C's 15 corruptions × 5 severities (Hendrycks & Dietterich, ICLR 2019; the
tables of ``make_cifar_c.py``); grey images get MNIST-C's 15 (Mu & Gilmer 2019; ``corruptions.py``),
each at the one severity the benchmark uses. Where MNIST-C's code holds a five-step table around it,
that table is the 5-step scale (``severities="all"``); the benchmark's step is the default. What cannot
be reproduced without the references' data files is listed in ``UNAVAILABLE``, never skipped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from torch import Tensor

from robustkit.corruptions import blur, digital, noise, strokes, weather
from robustkit.corruptions.blur import zoom_factors
from robustkit.errors import ConfigError
from robustkit.per_sample_random import SampleRandom

Apply = Callable[[Tensor, Any, SampleRandom], Tensor]


@dataclass(frozen=True, kw_only=True)
class Corruption:
    """A corruption: the function, its parameter at each severity (1-based), the severities the benchmark scores."""

    name: str
    apply: Apply
    levels: tuple[Any, ...]
    benchmark: tuple[int, ...]
    family: str  # noise, blur, weather, digital, shape (MNIST-C's own)

    def parameter(self, severity: int) -> Any:
        if not 1 <= severity <= len(self.levels):
            raise ConfigError(f"corruption {self.name} has severities 1…{len(self.levels)}, not {severity}")
        return self.levels[severity - 1]


def _five(name: str, apply: Apply, levels: tuple, family: str) -> Corruption:
    return Corruption(name=name, apply=apply, levels=levels, benchmark=(1, 2, 3, 4, 5), family=family)


CIFAR_10_C: tuple[Corruption, ...] = (
    _five("gaussian_noise", noise.gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10), "noise"),
    _five("shot_noise", noise.shot_noise, (500, 250, 100, 75, 50), "noise"),
    _five("impulse_noise", noise.impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07), "noise"),
    _five("defocus_blur", blur.defocus_blur, ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)), "blur"),
    _five("glass_blur", blur.glass_blur, ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)), "blur"),
    _five("motion_blur", blur.motion_blur, ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)), "blur"),
    _five(
        "zoom_blur", blur.zoom_blur, tuple(zoom_factors(stop, 0.01) for stop in (1.06, 1.11, 1.16, 1.21, 1.26)), "blur"
    ),
    _five(
        "snow",
        weather.snow,
        (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ),
        "weather",
    ),
    _five("fog", weather.fog, ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)), "weather"),
    _five("brightness", digital.brightness, (0.05, 0.1, 0.15, 0.2, 0.3), "weather"),
    _five("contrast", digital.contrast, (0.75, 0.5, 0.4, 0.3, 0.15), "digital"),
    _five(
        "elastic_transform",
        digital.elastic_transform,
        tuple(
            (32 * a, 32 * s, 32 * t)
            for a, s, t in ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
        ),
        "digital",
    ),
    _five("pixelate", digital.pixelate, (0.95, 0.9, 0.85, 0.75, 0.65), "digital"),
    _five("jpeg_compression", digital.jpeg_compression, (80, 65, 58, 50, 40), "digital"),
)


def _one(name: str, apply: Apply, levels: tuple, benchmark: int, family: str) -> Corruption:
    return Corruption(name=name, apply=apply, levels=levels, benchmark=(benchmark,), family=family)


MNIST_C: tuple[Corruption, ...] = (
    _one("shot_noise", noise.shot_noise, (60, 25, 12, 5, 3), 5, "noise"),
    _one("impulse_noise", noise.impulse_noise, (0.03, 0.06, 0.09, 0.17, 0.27), 4, "noise"),
    _one(
        "glass_blur",
        partial(blur.glass_blur, coin=True, grey_rows_only=True),
        ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        1,
        "blur",
    ),
    _one("motion_blur", blur.motion_blur, ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)), 1, "blur"),
    _one("shear", strokes.shear, (0.2, 0.4, 0.6, 0.8, 1.0), 2, "shape"),
    _one("scale", strokes.scale, (1 / 0.9, 1 / 0.8, 1 / 0.7, 1 / 0.6, 1 / 0.5), 3, "shape"),
    _one("rotate", strokes.rotate, (0.2, 0.4, 0.6, 0.8, 1.0), 2, "shape"),
    _one("brightness", digital.brightness, (0.1, 0.2, 0.3, 0.4, 0.5), 5, "weather"),
    _one("translate", strokes.translate, (1, 2, 3, 4, 5), 3, "shape"),
    _one("stripe", strokes.stripe, (None,), 1, "shape"),
    _one(
        "fog", partial(weather.fog, mapsize=256), ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)), 5, "weather"
    ),
    _one(
        "spatter",
        weather.spatter,
        (
            (0.65, 0.3, 4, 0.69, 0.6, 0),
            (0.65, 0.3, 3, 0.68, 0.6, 0),
            (0.65, 0.3, 2, 0.68, 0.5, 0),
            (0.65, 0.3, 1, 0.65, 1.5, 1),
            (0.67, 0.4, 1, 0.65, 1.5, 1),
        ),
        4,
        "weather",
    ),
    _one("dotted_line", strokes.dotted_line, (None,), 1, "shape"),
    _one("zigzag", strokes.zigzag, (None,), 1, "shape"),
    _one("canny_edges", strokes.canny_edges, (None,), 1, "shape"),
)

UNAVAILABLE = {
    "frost": "CIFAR-10-C overlays crops of six frost photographs shipped with the reference's code; without "
    "those image files it cannot be reproduced, so it is left out of the mean",
}  # fmt: skip  (CIFAR-10-C's; MNIST-C's 15 need no data files)


def unavailable(channels: int) -> dict[str, str]:
    """The benchmark's corruptions left out on images with ``channels``, and why."""
    return dict(UNAVAILABLE) if channels == 3 else {}


def corruption_set(channels: int) -> tuple[Corruption, ...]:
    """CIFAR-10-C's corruptions for colour images, MNIST-C's for grey ones."""
    if channels == 3:
        return CIFAR_10_C
    if channels == 1:
        return MNIST_C
    raise ConfigError(
        f"corruptions are defined for grey (1 channel) and colour (3 channel) images, not {channels} channels"
    )


def benchmark_name(channels: int) -> str:
    return "CIFAR-10-C" if channels == 3 else "MNIST-C"


def select(
    channels: int, names: tuple[str, ...] | None = None, severities: str | tuple[int, ...] = "benchmark"
) -> list[tuple[Corruption, int]]:
    """The (corruption, severity) pairs to evaluate: ``names`` [every available one]; ``severities``
    "benchmark" (the benchmark's own), "all" (every step a corruption has) or a tuple of steps."""
    known = {c.name: c for c in corruption_set(channels)}
    for name in names or ():
        if name in unavailable(channels):
            raise ConfigError(f"corruption {name} is unavailable: {UNAVAILABLE[name]}")
        if name not in known:
            raise ConfigError(f"unknown corruption {name} for {benchmark_name(channels)}; known: {', '.join(known)}")
    chosen = [known[n] for n in names] if names else list(known.values())
    pairs = []
    for corruption in chosen:
        if severities == "benchmark":
            steps = corruption.benchmark
        elif severities == "all":
            steps = tuple(range(1, len(corruption.levels) + 1))
        else:
            steps = tuple(s for s in severities if s <= len(corruption.levels)) or corruption.benchmark
            for s in severities:
                if not 1 <= s <= 5:
                    raise ConfigError(f"severities run from 1 to 5, not {s}")
        pairs.extend((corruption, s) for s in steps)
    return pairs
