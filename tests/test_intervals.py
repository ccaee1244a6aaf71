"""Intervals and paired tests checked against closed forms, hand-counted cases and a simulation of coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robustkit.results.intervals import (
    Interval,
    bootstrap_mean_interval,
    fraction_interval,
    mcnemar_pvalue,
    paired_bootstrap_pvalue,
    proportion_interval,
    separated,
)


@pytest.mark.parametrize("n", [1, 10, 300, 1000])
def test_clopper_pearson_at_the_edges_is_the_closed_form(n):
    # k = 0: P(X = 0) = (1 - p)^n = α/2 at the upper end; k = n: p^n = α/2 at the lower end.
    assert proportion_interval(0, n).low == 0.0
    assert proportion_interval(0, n).high == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-9)
    assert proportion_interval(n, n).low == pytest.approx(0.025 ** (1 / n), rel=1e-9)
    assert proportion_interval(n, n).high == 1.0


def _binomial_tail(k: int, n: int, p: float, upper: bool) -> float:
    """P(X ≥ k) (upper) or P(X ≤ k) by summing the pmf: the definition the exact interval inverts."""
    terms = range(k, n + 1) if upper else range(0, k + 1)
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in terms)


@pytest.mark.parametrize(("k", "n"), [(8, 300), (150, 300), (275, 300), (1, 20)])
def test_clopper_pearson_inverts_the_binomial_tails(k, n):
    interval = proportion_interval(k, n)
    assert _binomial_tail(k, n, interval.low, upper=True) == pytest.approx(0.025, rel=1e-6)
    assert _binomial_tail(k, n, interval.high, upper=False) == pytest.approx(0.025, rel=1e-6)


@pytest.mark.parametrize("n", [200, 300, 500])
def test_coverage_is_at_least_95_percent_near_0_and_1_in_a_simulation(n):
    """Where robust accuracies live (near 0 and 1), the exact interval still covers the true value ≥ 95 %
    of the time; computed exactly over every count, and checked by a seeded simulation."""
    rng = np.random.default_rng(0)
    bounds = [proportion_interval(k, n) for k in range(n + 1)]
    low = np.array([b.low for b in bounds])
    high = np.array([b.high for b in bounds])
    for p in [0.002, 0.01, 0.03, 0.1, 0.5, 0.9, 0.97, 0.99, 0.998]:
        counts = np.arange(n + 1)
        pmf = np.array([math.comb(n, int(i)) for i in counts], dtype=float) * p**counts * (1 - p) ** (n - counts)
        exact = pmf[(low <= p) & (p <= high)].sum()
        drawn = rng.binomial(n, p, size=20000)
        simulated = ((low[drawn] <= p) & (p <= high[drawn])).mean()
        assert exact >= 0.95, (n, p, exact)
        assert simulated >= 0.945, (n, p, simulated)  # 20000 draws: the simulation's own error is ~0.0016


def test_a_stored_float32_fraction_gives_its_count_back():
    import torch

    fraction = torch.tensor(275 / 300, dtype=torch.float32).item()  # 0.9166666865348816
    assert fraction_interval(fraction, 300) == proportion_interval(275, 300)
    assert fraction_interval(None, 300).low is None
    assert fraction_interval(0.5, 0).text() == ""


def test_mcnemar_counts_only_the_discordant_images():
    first = np.array([True] * 50 + [True] * 10 + [False] * 2 + [False] * 38)
    second = np.array([True] * 50 + [False] * 10 + [True] * 2 + [False] * 38)
    # 10 vs 2 discordant: two-sided exact binomial p = 2 · P(X ≤ 2 | 12, 1/2) = 2 · 79 / 4096
    assert mcnemar_pvalue(first, second) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert separated(mcnemar_pvalue(first, second))
    assert mcnemar_pvalue(first, first) == 1.0
    few_first, few_second = np.array([1, 1, 1, 0, 1], bool), np.array([0, 0, 0, 1, 1], bool)
    assert mcnemar_pvalue(few_first, few_second) == pytest.approx(2 * 5 / 16)  # 3 vs 1: 2 · P(X ≤ 1 | 4, 1/2)
    assert not separated(mcnemar_pvalue(few_first, few_second))
    with pytest.raises(ValueError):
        mcnemar_pvalue(first, second[:10])


def test_bootstrap_interval_covers_the_mean_and_is_reproducible():
    values = np.random.default_rng(1).random((400, 3)) < 0.6
    interval = bootstrap_mean_interval(values)
    assert interval.low < values.mean() < interval.high
    assert interval == bootstrap_mean_interval(values)
    # For a proportion the bootstrap is close to the normal approximation's half-width 1.96·sqrt(p(1-p)/n).
    one = values[:, 0]
    half = 1.96 * math.sqrt(one.mean() * (1 - one.mean()) / len(one))
    width = bootstrap_mean_interval(one)
    assert (width.high - width.low) / 2 == pytest.approx(half, rel=0.1)


def test_paired_bootstrap_tells_a_real_difference_from_none():
    rng = np.random.default_rng(2)
    base = rng.random((500, 2)) < 0.5
    better = base | (rng.random((500, 2)) < 0.2)
    assert separated(paired_bootstrap_pvalue(better, base))
    noise = base ^ (rng.random((500, 2)) < 0.01)
    assert not separated(paired_bootstrap_pvalue(noise, base))


@pytest.mark.parametrize(("k", "n"), [(0, 45), (8, 300), (275, 300), (45, 45), (517, 1000)])
def test_clopper_pearson_is_scipys_exact_binomial_interval(k, n):
    from scipy.stats import beta, binomtest

    ours = proportion_interval(k, n)
    peer = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")  # found by root finding
    assert (ours.low, ours.high) == pytest.approx((peer.low, peer.high), rel=1e-9, abs=1e-15)
    tail = (1 - 0.95) / 2
    textbook = Interval(
        float(beta.ppf(tail, k, n - k + 1)) if k else 0.0, float(beta.ppf(1 - tail, k + 1, n - k)) if k < n else 1.0
    )
    assert ours == textbook  # scipy.stats' beta quantiles, bit for bit, without importing scipy.stats
