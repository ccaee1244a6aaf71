"""APGD and the reliable ensemble: against PGD, against a peer implementation, and their own rules."""

import pytest
import torch
from attack_fixtures import DATA, tiny_model

from attacks import APGD, PGD, Ensemble
from attacks.apgd import checkpoints
from robustkit.data.base import Split
from robustkit.errors import ConfigError
from robustkit.evaluation.engine import evaluate_attack
from robustkit.losses import attack_loss
from robustkit.per_sample_random import SampleRandom


def correct_samples():
    model = tiny_model()
    x, y = DATA.test.images, DATA.test.labels
    keep = model(x).argmax(1) == y
    return model, x[keep], y[keep]


def test_checkpoints_follow_the_paper():
    # p0 = 0, p1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06), times 100 iterations
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_dlr_loss_matches_its_formula_and_ignores_logit_scale():
    logits = torch.tensor([[3.0, 1.0, 0.5, -2.0], [0.0, 2.0, 1.0, 0.5]])
    y = torch.tensor([0, 0])
    # untargeted: −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3)
    expected = torch.tensor([-(3.0 - 1.0) / (3.0 - 0.5), -(0.0 - 2.0) / (2.0 - 0.5)])
    assert torch.allclose(attack_loss(logits, y, None, "dlr"), expected)
    assert torch.allclose(attack_loss(7 * logits + 3, y, None, "dlr"), expected, atol=1e-6)
    target = torch.tensor([2, 3])
    # targeted: −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2)
    expected_t = torch.tensor([-(3.0 - 0.5) / (3.0 - (0.5 - 2.0) / 2), -(0.0 - 0.5) / (2.0 - (0.5 + 0.0) / 2)])
    assert torch.allclose(attack_loss(logits, y, target, "dlr"), expected_t)


def test_apgd_is_at_least_as_strong_as_pgd_with_the_same_budget():
    model, x, y = correct_samples()
    apgd = pgd = 0
    for eps in (0.05, 0.08, 0.1):
        apgd += int(APGD(eps=eps, steps=20)(model, x, y).success.sum())
        pgd += int(PGD(eps=eps, steps=20)(model, x, y).success.sum())
    assert apgd >= pgd > 0


def test_apgd_needs_no_step_size_where_pgd_does():
    """PGD with a badly chosen step barely moves; APGD starts at 2ε and adapts, whatever the scale."""
    model, x, y = correct_samples()
    timid = PGD(eps=0.1, steps=20, step_size=0.001)(model, x, y).success.float().mean()
    auto = APGD(eps=0.1, steps=20)(model, x, y).success.float().mean()
    assert auto > timid + 0.3


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_agrees_with_the_torchattacks_implementation(loss):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = correct_samples()
    for eps in (0.05, 0.1):
        ours = APGD(eps=eps, steps=30, loss=loss)(model, x, y).success.sum().item()
        peer = torchattacks.APGD(model, norm="Linf", eps=eps, steps=30, n_restarts=1, loss=loss, seed=0)
        theirs = (model(peer(x, y)).argmax(1) != y).sum().item()
        assert ours >= theirs - 2, (eps, ours, theirs)  # same algorithm; random starts differ


def test_targeted_topk_apgd_breaks_at_least_what_untargeted_dlr_breaks():
    model, x, y = correct_samples()
    plain = APGD(eps=0.08, steps=30, loss="dlr")(model, x, y)
    topk = APGD(eps=0.08, steps=30, loss="dlr", targets=3)(model, x, y)
    assert topk.success.sum() >= plain.success.sum() - 1
    assert torch.equal(topk.success, model(topk.x_adv).argmax(1) != y)  # success means misclassified
    with pytest.raises(ConfigError, match="targets"):
        APGD(eps=0.1, targets=-1)


def test_apgd_reaches_a_caller_given_target():
    model, x, y = correct_samples()
    target = (y + 1) % 4
    result = APGD(eps=0.3, steps=30)(model, x, y, target=target)
    assert result.success.float().mean() > 0.8
    assert torch.equal(result.success, model(result.x_adv).argmax(1) == target)


def test_apgd_stops_where_the_gradient_is_zero_and_loses_nothing_there():
    from torch import nn

    from defenses.transforms import BitDepth

    masked = nn.Sequential(BitDepth(bits=3), tiny_model())  # rounding: the input gradient is exactly 0
    x, y = DATA.test.images[:48], DATA.test.labels[:48]
    attack = APGD(eps=0.1, steps=30, seed=3)
    result = attack(masked, x, y)
    # with no gradient the iterates never leave the random start: that start is the whole attack
    start = attack.threat.random_point(x, SampleRandom(3, torch.arange(len(x))))
    with torch.no_grad():
        fooled_at_start = masked(start).argmax(1) != y
    assert torch.equal(result.success, fooled_at_start)
    assert torch.equal(result.x_adv[~fooled_at_start], start[~fooled_at_start])
    assert (result.queries == 1).all()  # one pass each, not 31
    # with BPDA the gradient is not zero, so nothing stops early and the attack does its work
    bpda = APGD(eps=0.1, steps=30, seed=3, bpda=True)(masked, x, y)
    assert bpda.success.sum() > fooled_at_start.sum() and (bpda.queries[~bpda.success] == 31).all()


def test_ensemble_is_a_cascade_over_the_still_robust_samples():
    model, x, y = correct_samples()
    ensemble = Ensemble(eps=0.08, steps=10, queries=100)
    result = ensemble(model, x, y)
    # the cascade written out by hand: each member on what the earlier ones left unbroken
    robust = torch.ones(len(y), dtype=torch.bool)
    for _, attack in ensemble.members():
        todo = robust.nonzero().squeeze(1)
        robust[todo[attack(model, x[todo], y[todo], index=todo).success]] = False
    assert torch.equal(result.success, ~robust)
    broken_by = result.extras["broken_by"]
    assert torch.equal(broken_by >= 0, result.success)
    assert torch.equal(broken_by == 0, ensemble.members()[0][1](model, x, y).success)  # APGD-CE sees everything
    assert torch.equal(result.success, model(result.x_adv).argmax(1) != y)
    assert (result.queries[broken_by == 0] <= 11).all()  # a broken sample stops costing anything


def test_ensemble_figure_through_the_evaluation_engine():
    model, x, y = tiny_model(), DATA.test.images, DATA.test.labels
    reliable = evaluate_attack(model, Split(x, y), Ensemble(eps=0.08, steps=10, queries=100), progress=False)
    pgd = evaluate_attack(model, Split(x, y), PGD(eps=0.08, steps=10), progress=False)
    assert reliable.n_unverified == 0
    assert reliable.robust_accuracy <= pgd.robust_accuracy
