"""Certified accuracy versus L2 radius: the figure per radius with its 95 % interval, the radii shown, the plot.

Certified accuracy at r is the share of images whose smoothed prediction is their label and certified at
radius ≥ r (an abstention certifies nothing); it is a proportion of n images, so it gets the exact
Clopper–Pearson interval of ``robustkit.results.intervals``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from robustkit.results.figure_file import save_figure
from robustkit.results.intervals import Interval, proportion_interval

RADIUS_STEP = 0.25  # the radii shown by default: multiples of this up to the largest certifiable one


def default_radii(max_radius: float) -> list[float]:
    """0, 0.25, 0.5 … up to ``max_radius`` (the largest n draws can certify: no radius past it can count)."""
    return [k * RADIUS_STEP for k in range(math.floor(max_radius / RADIUS_STEP + 1e-9) + 1)]


def correct_radii(
    radius: Sequence[float | None], prediction: Sequence[int], label: Sequence[int]
) -> list[float | None]:
    """Per image the radius certified for its own label: None where the smoothed classifier abstains or is wrong."""
    return [
        r if p == y and r is not None and not math.isnan(r) else None
        for r, p, y in zip(radius, prediction, label, strict=False)
    ]


def certified_count(radii_correct: Sequence[float | None], radius: float) -> int:
    return sum(1 for r in radii_correct if r is not None and r >= radius)


def certified_accuracy(
    radii_correct: Sequence[float | None], radii: Sequence[float]
) -> list[tuple[float, float, Interval]]:
    """(radius, certified accuracy, its 95 % interval) at each radius."""
    n = len(radii_correct)
    rows = []
    for r in radii:
        count = certified_count(radii_correct, r)
        rows.append((float(r), count / n if n else math.nan, proportion_interval(count, n)))
    return rows


def draw_certified(ax, radii_correct: Sequence[float | None], max_radius: float, label: str, **style) -> None:
    """The certified-accuracy step curve on a matplotlib axis, its 95 % band shaded, 0 … ``max_radius``."""
    steps = sorted({0.0, *(r for r in radii_correct if r is not None), max_radius})
    points = certified_accuracy(radii_correct, steps)
    (line,) = ax.step(steps, [a for _, a, _ in points], where="post", label=label, **style)
    ax.fill_between(
        steps,
        [i.low for _, _, i in points],
        [i.high for _, _, i in points],
        step="post",
        color=line.get_color(),
        alpha=0.2,
        linewidth=0,
    )


def save_certified_plot(
    radii_correct: Sequence[float | None],
    path: str | Path,
    *,
    max_radius: float,
    title: str,
    empirical: Sequence[tuple[float, float, Interval]] = (),
) -> Path:
    """A PNG of certified accuracy vs L2 radius (95 % Clopper–Pearson band), the largest certifiable radius
    marked, and the empirical robust accuracy of the same smoothed classifier as points with error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.8))
    draw_certified(ax, radii_correct, max_radius, "certified (randomized smoothing)")
    if empirical:
        ax.errorbar(
            [r for r, _, _ in empirical],
            [a for _, a, _ in empirical],
            yerr=[[a - i.low for _, a, i in empirical], [i.high - a for _, a, i in empirical]],
            fmt="o",
            capsize=3,
            label="empirical (PGD + EOT on the smoothed classifier)",
        )
    ax.axvline(max_radius, color="grey", linestyle=":", label=f"largest certifiable radius {max_radius:.3f}")
    ax.set(xlabel="L2 radius", ylabel="accuracy", ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
