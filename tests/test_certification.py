"""Randomized smoothing against closed forms: a linear classifier's p_A under Gaussian noise is exact.

f(x) = [w·x + b > 0] under x + N(0, σ² I) says class 1 with probability Φ((w·x + b) / (σ‖w‖)), so
CERTIFY's count is Binomial(n, that), its radius tends to the distance |w·x + b| / ‖w‖ to the boundary
as n grows, and (the guarantee) never exceeds it but with probability α.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import beta, norm
from torch import nn

from robustkit.certification.smoothing import (
    ABSTAIN,
    Smoothing,
    certify,
    class_counts,
    predict,
)

SHAPE = (1, 4, 4)


class Linear(nn.Module):
    """Two logits ±(w·x + b): class 1 exactly where w·x + b > 0."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = nn.Parameter(w.double()), b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.double().flatten(1) @ self.w.flatten() + self.b
        return torch.stack([-s, s], dim=1)


def linear(seed: int = 0) -> Linear:
    return Linear(torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed)), 0.1)


def at_distance(model: Linear, distances: list[float]) -> torch.Tensor:
    """Points whose signed distance to the boundary is each of ``distances`` (x = t·w/‖w‖ shifted by b)."""
    w = model.w.detach().float()
    unit = w / w.norm()
    base = -model.b * w / w.norm() ** 2  # on the boundary
    return torch.stack([base + d * unit for d in distances])


def test_the_count_and_radius_match_the_closed_form_within_the_binomial_tolerance():
    model, sigma, n = linear(), 0.5, 20_000
    distances = [0.2, 0.4, -0.3, 0.6]
    x = at_distance(model, distances)
    cert = certify(model, x, torch.arange(4), Smoothing(sigma=sigma, n0=50, n=n, alpha=0.001, batch_size=4000), seed=3)
    for d, top, pred, lower, radius in zip(
        distances, cert.top_count, cert.prediction, cert.p_lower, cert.radius, strict=False
    ):
        p_a = norm.cdf(abs(d) / sigma)
        assert int(pred) == (1 if d > 0 else 0)
        assert abs(int(top) - n * p_a) <= 4.5 * math.sqrt(n * p_a * (1 - p_a))  # ~1e-5 chance to fail per point
        assert float(lower) == pytest.approx(
            beta.ppf(0.001, int(top), n - int(top) + 1), rel=1e-9
        )  # independent of intervals.py
        assert float(radius) == pytest.approx(sigma * norm.ppf(float(lower)), rel=1e-9)
        # the radius is about the distance: the bound's slack at n = 20 000 is a few hundredths
        assert abs(d) - 0.08 < float(radius) <= abs(d)


def test_the_radius_exceeds_the_distance_to_the_boundary_no_more_often_than_alpha_allows():
    """Each certificate may fail with probability ≤ α; a radius from the point estimate of p_A instead of its
    lower bound would overshoot about half the time (≈ 37 of these 75)."""
    from scipy.stats import binom

    model, sigma, alpha = linear(1), 0.25, 0.01
    distances = torch.tensor([0.05, 0.15, 0.3, 0.5, 0.7], dtype=torch.float64)
    x = at_distance(model, distances.tolist())
    smoothing = Smoothing(sigma=sigma, n0=20, n=2000, alpha=alpha, batch_size=2000)
    overshoot, certified = 0, 0
    for seed in range(15):
        cert = certify(model, x, torch.arange(len(x)), smoothing, seed=seed)
        overshoot += int((cert.radius > distances + 1e-9).sum())  # NaN (abstain) compares False
        certified += int((~cert.abstained).sum())
    assert certified >= 60  # the test has certificates to check (the 0.05 point abstains now and then)
    assert overshoot <= binom.ppf(1 - 1e-6, 75, alpha)


def test_far_from_the_boundary_the_radius_is_the_largest_n_draws_can_certify():
    model = linear()
    x = at_distance(model, [50.0])
    smoothing = Smoothing(sigma=0.25, n0=10, n=1000, alpha=0.001)
    cert = certify(model, x, torch.arange(1), smoothing)
    assert float(cert.radius[0]) == pytest.approx(0.25 * norm.ppf(0.001 ** (1 / 1000)), rel=1e-9)
    assert float(cert.radius[0]) == pytest.approx(smoothing.max_radius, rel=1e-12)
    # the figure: at σ = 0.25 and the paper's n = 100 000 nothing past ≈ 0.95 is certifiable
    assert Smoothing.paper(0.25).max_radius == pytest.approx(0.25 * norm.ppf(0.999_930_924), abs=1e-3)
    assert 0.95 < Smoothing.paper(0.25).max_radius < 0.955


def test_on_the_boundary_certify_and_predict_abstain():
    model = linear()
    x = at_distance(model, [0.0, 0.0, 0.0])
    smoothing = Smoothing(sigma=0.5, n0=50, n=2000, alpha=0.001)
    cert = certify(model, x, torch.arange(3), smoothing)
    assert (cert.prediction == ABSTAIN).all() and cert.radius.isnan().all()
    assert (cert.p_lower < 0.5).all()
    assert (predict(model, x, torch.arange(3), smoothing) == ABSTAIN).all()
    far = at_distance(model, [3.0, -3.0])
    assert predict(model, far, torch.arange(2), smoothing).tolist() == [1, 0]


def test_counts_are_reproducible_and_do_not_depend_on_the_batch():
    model = linear()
    x = at_distance(model, [0.1, 0.2, 0.3])
    index = torch.tensor([7, 11, 40])
    kw = {"sigma": 0.5, "num": 700, "phase": 1, "seed": 5}
    together = class_counts(model, x, index, batch_size=700, **kw)
    assert torch.equal(together, class_counts(model, x, index, batch_size=700, **kw))
    assert torch.equal(together, class_counts(model, x, index, batch_size=97, **kw))  # other forward batches
    alone = torch.cat([class_counts(model, x[i : i + 1], index[i : i + 1], batch_size=300, **kw) for i in (2, 0, 1)])
    assert torch.equal(together, alone[[1, 2, 0]])  # each image alone, in another order
    assert not torch.equal(together, class_counts(model, x, index, batch_size=700, **{**kw, "seed": 6}))
    assert not torch.equal(together, class_counts(model, x, index + 1, batch_size=700, **kw))  # noise is the image's


def test_certify_leaves_the_model_and_inputs_alone():
    model = linear().train()
    x = at_distance(model, [0.2])
    before = (x.clone(), model.w.detach().clone())
    certify(model, x, torch.arange(1), Smoothing(sigma=0.25, n0=10, n=100))
    assert model.training and torch.equal(x, before[0]) and torch.equal(model.w, before[1])


@pytest.mark.parametrize("bad", [{"sigma": 0}, {"n": 0}, {"alpha": 0.7}, {"n0": 1.5}])
def test_bad_settings_are_one_line_errors(bad):
    from robustkit.errors import ConfigError

    with pytest.raises(ConfigError):
        Smoothing(**bad)


def _in_box(model: Linear, distance: float) -> torch.Tensor:
    """A mid-grey image at signed ``distance`` from the boundary (b moved so), inside [0, 1] with room to move."""
    x = torch.full((1, *SHAPE), 0.5)
    w = model.w.detach()
    model.b = float(distance * w.norm() - (x.double().flatten() @ w.flatten()))
    return x


def test_smoothadv_breaks_the_smoothed_classifier_past_the_boundary_and_not_before():
    from robustkit.certification.empirical import SmoothAdv

    model = Linear(torch.randn(SHAPE, generator=torch.Generator().manual_seed(2)), 0.0)
    x = _in_box(model, 0.5)
    y, index = torch.tensor([1]), torch.arange(1)
    smoothing = Smoothing(sigma=0.25, n0=10, n=500)
    attack = SmoothAdv(steps=20, m=4, predict_n=500)
    far_robust, far_broken = attack.evaluate(model, x, y, index, 1.0, smoothing)  # the boundary is at 0.5
    near_robust, near_broken = attack.evaluate(model, x, y, index, 0.2, smoothing)
    assert far_broken.tolist() == [True] and far_robust.tolist() == [False]
    assert near_broken.tolist() == [False] and near_robust.tolist() == [True]
    x_adv = attack.perturb(model, x, y, index, 1.0, smoothing)
    assert (x_adv - x).flatten(1).norm(dim=1).item() <= 1.0 + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1


def test_a_certificate_above_what_the_attack_left_unbroken_is_flagged():
    from robustkit.certification.curve import certified_accuracy
    from robustkit.certification.empirical import EmpiricalPoint, soundness_flags

    radii_correct = [0.6] * 80 + [None] * 20  # 80 of 100 certified at 0.6
    curve = certified_accuracy(radii_correct, [0.0, 0.5])
    assert [a for _, a, _ in curve] == [0.8, 0.8]
    sound = EmpiricalPoint(0.5, robust=78, unbroken=82, n=100, contradicted=0)
    assert soundness_flags(curve, [sound]) == []
    unsound = EmpiricalPoint(0.5, robust=50, unbroken=55, n=100, contradicted=3)
    flags = soundness_flags(curve, [unsound])
    assert len(flags) == 2 and "3 image(s) certified" in flags[0] and "55/100" in flags[1]


def test_gaussian_augmentation_trains_on_unclipped_noise_of_its_sigma():
    from defenses import GaussianAugmentation
    from robustkit.training.loop import StepContext

    seen = []

    class Recorder(nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return torch.zeros(len(x), 3, requires_grad=True)

    x = torch.rand(64, *SHAPE)
    model = Recorder()
    ctx = StepContext(0, 0.0, torch.Generator().manual_seed(4), model, want_clean=False)
    GaussianAugmentation(sigma=0.5).loss_fn()(model, x, torch.zeros(64, dtype=torch.long), ctx)
    expected = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    assert len(seen) == 1 and torch.allclose(seen[0], expected)
    assert seen[0].min() < 0 and seen[0].max() > 1  # not clipped, unlike the gaussian-noise defense
    assert GaussianAugmentation(sigma=0.5).tag() == "sigma0.5"
