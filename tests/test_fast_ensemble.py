"""The fast reliable figure: MALT's targeting against its closed form, and the cascade's own rule."""

import pytest
import torch
from attack_fixtures import DATA, tiny_model
from torch import nn

from attacks import FastEnsemble
from attacks.fast_ensemble import linear_distances
from defenses import BitDepthReduction, JpegQuantization
from robustkit.evaluation.checks import answered_flags, run_checks


def test_malt_distances_are_the_exact_l1_dual_distances_on_a_linear_model():
    # logits = Wx + b: the boundary between y and c is the hyperplane (W_y − W_c)·x + b_y − b_c = 0, whose
    # L∞ distance from x is the gap over ‖W_y − W_c‖₁ (Hölder), so the linear estimate is exact
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5)).double()
    x, y = torch.rand(6, 1, 3, 4, dtype=torch.double), torch.tensor([0, 1, 2, 3, 4, 0])
    classes = torch.tensor([[c for c in range(5) if c != label] for label in y])
    probe = x.clone().requires_grad_(True)
    got = linear_distances(model(probe), probe, y, classes)
    w, b = model[1].weight.detach(), model[1].bias.detach()
    z = x.flatten(1) @ w.T + b
    for i in range(len(y)):
        for k, c in enumerate(classes[i]):
            expected = (z[i, y[i]] - z[i, c]) / (w[y[i]] - w[c]).abs().sum()
            assert torch.isclose(got[i, k].double(), expected, rtol=1e-5)


def test_fast_ensemble_is_a_cascade_over_the_still_robust_samples():
    model, x, y = tiny_model(), DATA.test.images[:48], DATA.test.labels[:48]
    keep = model(x).argmax(1) == y
    x, y = x[keep], y[keep]
    fast = FastEnsemble(eps=0.08, steps=10, targets=2, queries=60, patience=20)
    result = fast(model, x, y)
    robust = torch.ones(len(y), dtype=torch.bool)  # the cascade written out by hand
    for _, attack in fast.members():
        todo = robust.nonzero().squeeze(1)
        robust[todo[attack(model, x[todo], y[todo], index=todo).success]] = False
    assert torch.equal(result.success, ~robust)
    assert torch.equal(result.success, model(result.x_adv).argmax(1) != y)
    assert (result.x_adv - x).abs().amax() <= 0.08 + 1e-6
    assert 0 < result.success.sum() < len(y)  # the check can fail both ways on this model


@pytest.mark.parametrize(
    "defense", [BitDepthReduction(bits=2), JpegQuantization(quality=20)], ids=["bit-depth", "jpeg"]
)
def test_on_a_masking_defense_the_fast_figure_comes_with_the_default_checks_flag(defense):
    # without BPDA the gradient members see zero gradients, so the figure rests on a short Square: it must not
    # pass for a reliable one. The default checks, run as the engine runs them (on what the attack left), flag it,
    # and the flag reaches the user beside the figure as a note naming the remedy (BPDA), not dropped
    model, x, y = defense.wrap(tiny_model()).eval(), DATA.test.images[:48], DATA.test.labels[:48]
    fast = FastEnsemble(eps=0.1, steps=10, targets=2, queries=60, patience=10)
    robust = ~fast(model, x, y).success
    report = run_checks(model, x, y, norm="linf", eps=0.1, level="default", white=robust)
    answered = answered_flags(report.flags, fast)[1]
    assert "zero-gradients" in {f.check for f in answered}
    assert robust.any()  # something is left standing: the flag says it may still fall
