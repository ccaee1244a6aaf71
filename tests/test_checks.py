"""Gradient-masking checks: silent on a normal model, loud on models that hide their gradients."""

import torch
from attack_fixtures import DATA, tiny_model
from torch import nn

from attacks import PGD
from defenses import BitDepthReduction, GaussianNoise
from robustkit.data.base import Split
from robustkit.evaluation.checks import run_checks
from robustkit.evaluation.engine import evaluate_attack

X, Y = DATA.test.images[:48], DATA.test.labels[:48]


class SaturatingLogits(nn.Module):
    """A classic gradient-masking layer: logits scaled so far that softmax saturates (CE gradient 0 in
    float32) and, through a hard threshold, no input gradient flows at all."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        hard = torch.round(x)  # binarised at 0.5: a step function, gradient 0 everywhere
        return self.model(hard) * 1000.0


def flags(model, **kw):
    return {f.check for f in run_checks(model, X, Y, norm="linf", eps=0.1, steps=5, square_queries=300, **kw).flags}


def test_checks_stay_silent_on_a_normal_model():
    report = run_checks(tiny_model(), X, Y, norm="linf", eps=0.1, steps=5, square_queries=300)
    assert report.ok, [f.line() for f in report.flags]
    assert report.figures["pgd_accuracy_unbounded"] == 0.0
    assert report.figures["forward_max_difference"] == 0.0


def test_checks_flag_a_thresholding_layer():
    seen = flags(SaturatingLogits(tiny_model()).eval())
    assert {"zero-gradients", "unbounded-attack-fails"} <= seen


def test_checks_flag_bit_depth_reduction_and_bpda_breaks_it():
    model = BitDepthReduction(bits=2).wrap(tiny_model()).eval()
    assert "zero-gradients" in flags(model)
    plain = evaluate_attack(model, Split(X, Y), PGD(eps=0.15, steps=10), progress=False)
    bpda = evaluate_attack(model, Split(X, Y), PGD(eps=0.15, steps=10, bpda=True), progress=False)
    assert bpda.robust_accuracy < plain.robust_accuracy - 0.2


def test_checks_flag_a_randomised_forward_and_eot_is_no_weaker():
    model = GaussianNoise(sigma=0.3).wrap(tiny_model()).eval()
    report = run_checks(model, X, Y, norm="linf", eps=0.1, steps=5, square_queries=300)
    assert "randomised-forward" in {f.check for f in report.flags}
    assert "eot" in next(f.advice for f in report.flags if f.check == "randomised-forward")
    torch.manual_seed(0)
    plain = evaluate_attack(model, Split(X, Y), PGD(eps=0.1, steps=10), progress=False)
    torch.manual_seed(0)
    eot = evaluate_attack(model, Split(X, Y), PGD(eps=0.1, steps=10, eot=8), progress=False)
    assert eot.robust_accuracy <= plain.robust_accuracy + 0.05  # one random draw decides each verdict


def test_checks_never_change_the_model():
    model = tiny_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run_checks(model, X[:8], Y[:8], norm="l2", eps=1.0, steps=2, square_queries=20)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
