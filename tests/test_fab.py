"""FAB: its hyperplane projections, its examples, its modes, and agreement with the official implementation."""

import pytest
import torch
from attack_fixtures import DATA, tiny_model

from attacks import FAB
from robustkit.data.base import Split
from robustkit.errors import ConfigError
from robustkit.evaluation.engine import evaluate_attack
from robustkit.threats.hyperplane import project


def correct_samples():
    model = tiny_model()
    x, y = DATA.test.images, DATA.test.labels
    keep = model(x).argmax(1) == y
    return model, x[keep], y[keep]


def random_hyperplanes(n=64, d=40, reachable=True):
    g = torch.Generator().manual_seed(0)
    t, w = torch.rand(n, d, generator=g), torch.randn(n, d, generator=g)
    w = w * (torch.rand(n, d, generator=g) > 0.1)  # some coordinates the hyperplane ignores
    b = (w * torch.rand(n, d, generator=g)).sum(1)  # through a point of the box: reachable
    return t, w, b if reachable else b + 3 * w.abs().sum(1)


def test_l2_projection_without_the_box_in_the_way_is_the_closed_form():
    t, w = torch.full((1, 4), 0.5), torch.tensor([[0.1, -0.2, 0.05, 0.0]])
    b = (w * t).sum(1) + 0.01
    assert torch.allclose(project(t, w, b, "l2"), 0.01 * w / (w * w).sum(), atol=1e-7)


@pytest.mark.parametrize("norm, p", [("linf", float("inf")), ("l2", 2), ("l1", 1)])
def test_projections_reach_the_hyperplane_in_the_box_as_short_as_the_official_ones(norm, p):
    fab_projections = pytest.importorskip("pyautoattack.fab_projections")
    official = getattr(fab_projections, f"projection_{norm}")
    t, w, b = random_hyperplanes()
    delta = project(t, w, b, norm)
    assert ((t + delta) >= 0).all() and ((t + delta) <= 1).all()
    assert torch.allclose((w * (t + delta)).sum(1), b, atol=1e-4)
    theirs = official(t, w.clone(), b.clone())
    assert torch.allclose(delta.norm(p=p, dim=1), theirs.norm(p=p, dim=1), atol=1e-5)
    # out of the box's reach: the corner that comes closest, as the official code returns
    t, w, b = random_hyperplanes(reachable=False)
    assert torch.allclose(project(t, w, b, norm), official(t, w.clone(), b.clone()), atol=1e-6)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0), ("l1", 8.0)])
@pytest.mark.parametrize("targets", [0, 3])
def test_fab_examples_are_verified_and_inside_the_ball(norm, eps, targets):
    model, x, y = correct_samples()
    attack = FAB(eps=eps, norm=norm, targets=targets, steps=30)
    result = attack(model, x, y)
    assert result.success.any() and attack.threat.contains(x, result.x_adv).all()
    assert torch.equal(result.success, model(result.x_adv).argmax(1) != y)
    evaluation = evaluate_attack(model, Split(x, y), attack, progress=False)
    assert evaluation.n_unverified == 0 and evaluation.robust_accuracy == pytest.approx(
        1 - result.success.float().mean().item()
    )


def test_fab_with_a_target_tensor_reaches_that_class():
    model, x, y = correct_samples()
    target = (model(x).scatter(1, y[:, None], float("-inf"))).argmax(1)  # the nearest wrong class
    result = FAB(eps=0.15, steps=30)(model, x, y, target=target)
    assert result.success.any()
    assert torch.equal(result.success, model(result.x_adv).argmax(1) == target)


def test_min_norm_mode_finds_norms_no_larger_than_the_bounded_run_and_positive():
    model, x, y = correct_samples()
    bounded = FAB(eps=0.1, steps=40)(model, x, y)
    smallest = FAB(eps=0.1, steps=40, minimize=True)(model, x, y)
    assert smallest.success.sum() > bounded.success.sum()  # examples beyond ε are returned too
    assert (smallest.norms[smallest.success] > 0).all()
    assert (smallest.norms[bounded.success] <= bounded.norms[bounded.success] + 1e-6).all()
    curve = evaluate_attack(model, Split(x, y), FAB(eps=0.1, steps=40, minimize=True), progress=False)
    assert curve.n_unverified == 0 and curve.curve([0.1])[0] == pytest.approx(
        1 - bounded.success.float().mean().item(), abs=0.02
    )


def test_fab_is_reproducible_and_leaves_model_and_inputs_alone():
    model, x, y = correct_samples()
    params = {k: v.clone() for k, v in model.state_dict().items()}
    x_before = x.clone()
    first = FAB(eps=0.1, restarts=2, steps=20, seed=3)(model, x, y)
    again = FAB(eps=0.1, restarts=2, steps=20, seed=3)(model, x, y)
    assert torch.equal(first.x_adv, again.x_adv)
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and torch.equal(x, x_before)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"FAB attacks linf, l2, l1, not 'l0'"):
        FAB(eps=1, norm="l0")
    with pytest.raises(ConfigError, match="steps"):
        FAB(eps=0.1, steps=0)
    with pytest.raises(ConfigError, match="alpha_max"):
        FAB(eps=0.1, alpha_max=2)


@pytest.mark.slow
@pytest.mark.parametrize("norm, eps", [("linf", 0.05), ("l2", 1.0), ("l1", 5.0)])
@pytest.mark.parametrize("targets", [0, 3])
def test_fab_agrees_with_the_official_implementation(norm, eps, targets):
    fab_pt = pytest.importorskip("pyautoattack.fab_pt")
    model, x, y = correct_samples()
    official = fab_pt.FABAttack_PT(
        model,
        norm={"linf": "Linf", "l2": "L2", "l1": "L1"}[norm],
        n_restarts=1,
        n_iter=100,
        eps=eps,
        seed=0,
        targeted=bool(targets),
        n_target_classes=targets or 9,
        device="cpu",
    )
    adv = official.perturb(x, y)
    size = (adv - x).flatten(1).norm(p={"linf": float("inf"), "l2": 2, "l1": 1}[norm], dim=1)
    theirs = ((model(adv).argmax(1) != y) & (size <= eps * (1 + 1e-5))).sum().item()
    ours = FAB(eps=eps, norm=norm, targets=targets)(model, x, y).success.sum().item()
    assert abs(ours - theirs) <= 1 and theirs > 0
