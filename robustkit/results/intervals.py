"""The uncertainty of a figure measured on n images: 95 % intervals and paired tests between entries.

Every accuracy robustkit prints or stores is an estimate from a finite sample of images, so it comes
with an interval. A proportion (clean, robust accuracy, success rate) gets the exact Clopper–Pearson
interval: its coverage is at least 95 % at every true accuracy and every n (Wilson's is narrower but
falls to about 92–93 % near 0 and 1 at n = 200–500, where robust accuracies live). A mean of several
per-image figures (a worst-case mean over threat models, a mean corruption accuracy) is not a
proportion: it gets a percentile bootstrap over images. Two entries scored on the same images are
compared with a paired test: McNemar's exact test on one yes/no outcome per image, a paired bootstrap
for a mean. Imports NumPy and SciPy only (a leaderboard reads a store without torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95  # every interval robustkit prints or stores
BOOTSTRAP_RESAMPLES = 2000  # percentile bootstrap: the 2.5 % and 97.5 % points are stable to about 0.002 here
BOOTSTRAP_SEED = 0  # fixed, so a leaderboard recomputed from the same store prints the same intervals


@dataclass(frozen=True)
class Interval:
    """A two-sided interval around an estimate; ``low``/``high`` are None where the figure does not apply."""

    low: float | None
    high: float | None

    def text(self, spec: str = ".4f") -> str:
        """``[0.0116, 0.0518]``, or "" where there is no interval."""
        if self.low is None or self.high is None:
            return ""
        return f"[{format(self.low, spec)}, {format(self.high, spec)}]"


NO_INTERVAL = Interval(None, None)


def proportion_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Clopper–Pearson (exact binomial) interval for ``successes`` out of ``n``; none for n = 0."""
    # The beta quantile as scipy.stats.beta.ppf computes it (bit for bit), from scipy.special: every
    # `robustkit evaluate` prints an interval, and the first one cost 1.8 s through scipy.stats against
    # 0.34 s this way (medians of 5 fresh processes after torch, loaded 2-core machine). Imported here,
    # so `--help` pays neither.
    from scipy.special import betaincinv

    successes, n = int(successes), int(n)
    if n <= 0:
        return NO_INTERVAL
    if not 0 <= successes <= n:
        raise ValueError(f"proportion_interval: {successes} successes out of {n}")
    tail = (1 - confidence) / 2
    low = 0.0 if successes == 0 else float(betaincinv(successes, n - successes + 1, tail))
    high = 1.0 if successes == n else float(betaincinv(successes + 1, n - successes, 1 - tail))
    return Interval(low, high)


def lower_confidence_bound(successes: int, n: int, alpha: float) -> float:
    """One-sided Clopper–Pearson lower bound: p ≥ it with probability ≥ 1 − ``alpha`` (randomized smoothing's
    bound on p_A; the low end of the two-sided interval at confidence 1 − 2α, as Cohen et al.'s code takes it)."""
    from scipy.special import betaincinv

    successes, n = int(successes), int(n)
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"lower_confidence_bound: {successes} successes out of {n}")
    return 0.0 if successes == 0 else float(betaincinv(successes, n - successes + 1, alpha))


def fraction_interval(fraction: float | None, n: int | None, confidence: float = CONFIDENCE) -> Interval:
    """The interval of a stored proportion: its count is recovered as round(fraction · n), exact for any
    fraction that was computed as count / n (even after a float32 round trip, for n < 2^23)."""
    if fraction is None or n is None or fraction != fraction or n <= 0:
        return NO_INTERVAL
    return proportion_interval(round(fraction * n), n, confidence)


PROPORTIONS = ("clean_accuracy", "robust_accuracy", "attack_success_rate")  # the record's figures with an interval


def interval_figures(counts: Mapping[str, tuple[int, int] | None]) -> dict[str, float | None]:
    """A record's interval columns, ``{figure}_low`` and ``{figure}_high``, from each figure's (count, out
    of) — the counts, not the stored fraction; None where the figure does not apply (None, or out of 0)."""
    figures: dict[str, float | None] = {}
    for figure, count in counts.items():
        interval = NO_INTERVAL if count is None else proportion_interval(*count)
        figures.update({f"{figure}_low": interval.low, f"{figure}_high": interval.high})
    return figures


def row_interval(row: Mapping[str, Any], figure: str) -> Interval:
    """The interval a record holds for ``figure`` (one of ``PROPORTIONS``). A row stored before records
    held intervals (its columns NULL) gets the one its fraction and n give back: a success rate is out
    of the samples attacked (the correctly classified; every one sought where there is no clean image)."""
    low, high = row.get(f"{figure}_low"), row.get(f"{figure}_high")
    if not (_missing(low) or _missing(high)):
        return Interval(float(low), float(high))
    n, clean = row.get("n"), row.get("clean_accuracy")
    if figure == "attack_success_rate" and not _missing(n) and not _missing(clean):
        n = round(float(clean) * int(n))
    value = row.get(figure)
    return NO_INTERVAL if _missing(value) or _missing(n) else fraction_interval(float(value), int(n))


def _missing(value: Any) -> bool:
    """NULL as SQLite, pandas (NaN) or a CSV read as text ("") give it back."""
    return value is None or value == "" or (isinstance(value, float) and value != value)


def bootstrap_mean_interval(
    values: np.ndarray,
    confidence: float = CONFIDENCE,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Percentile bootstrap over images of the mean of ``values`` (n, or n × m: the mean over all of it,
    images resampled as rows so that one image's figures stay together)."""
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    n = len(values)
    if n == 0:
        return NO_INTERVAL
    per_image = values.mean(axis=1)
    rows = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    means = per_image[rows].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(low), float(high))


def mcnemar_pvalue(first: np.ndarray, second: np.ndarray) -> float:
    """Exact two-sided McNemar test of two yes/no outcomes on the same images: under "no difference"
    the images where exactly one of them says yes split evenly (a binomial test at 1/2)."""
    from scipy.stats import binomtest

    first, second = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    if first.shape != second.shape:
        raise ValueError(f"mcnemar_pvalue: outcomes on {first.shape} and {second.shape} images are not paired")
    only_first = int((first & ~second).sum())
    only_second = int((second & ~first).sum())
    if only_first + only_second == 0:
        return 1.0
    return float(binomtest(only_first, only_first + only_second, 0.5).pvalue)


def paired_bootstrap_pvalue(
    first: np.ndarray, second: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> float:
    """Two-sided paired bootstrap test that two per-image means (rows: images; columns averaged) differ:
    twice the smaller share of resampled mean differences on either side of zero."""
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if first.shape[0] != second.shape[0]:
        raise ValueError(f"paired_bootstrap_pvalue: {first.shape[0]} and {second.shape[0]} images are not paired")
    difference = (first.reshape(len(first), -1).mean(axis=1)) - (second.reshape(len(second), -1).mean(axis=1))
    if not difference.any():
        return 1.0
    rows = np.random.default_rng(seed).integers(0, len(difference), size=(resamples, len(difference)))
    means = difference[rows].mean(axis=1)
    share = min((means <= 0).mean(), (means >= 0).mean())
    return float(min(1.0, 2 * share))


def separated(pvalue: float, confidence: float = CONFIDENCE) -> bool:
    """Whether a paired test says two entries differ at the intervals' level."""
    return pvalue < 1 - confidence
