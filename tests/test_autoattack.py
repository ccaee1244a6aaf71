"""AutoAttack (standard): its members and settings, its one-line errors, and agreement with the official package."""

import functools

import pytest
import torch
import yaml
from attack_fixtures import DATA, tiny_model

from attacks import APGD, FAB, AutoAttack, Square
from robustkit.adaptation import Adaptation
from robustkit.data import get_dataset
from robustkit.data.base import Split
from robustkit.errors import ConfigError
from robustkit.evaluation.engine import evaluate_attack
from robustkit.models import get_model
from robustkit.predict import predict
from robustkit.random_forward import fixed_draws
from robustkit.registry import DEFENSES
from robustkit.suites.spec import load_suite
from robustkit.training.loop import TrainConfig, train_model


def test_standard_version_runs_the_published_cascade():
    members = AutoAttack(eps=8 / 255).members()
    assert [name for name, _ in members] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    (_, ce), (_, t), (_, fab), (_, square) = members
    assert isinstance(ce, APGD) and (ce.loss, ce.targets, ce.restarts, ce.steps) == ("ce", 0, 1, 100)
    assert isinstance(t, APGD) and (t.loss, t.targets, t.restarts, t.steps) == ("dlr", 9, 1, 100)
    assert isinstance(fab, FAB) and (fab.targets, fab.restarts, fab.steps, fab.minimize) == (9, 1, 100, False)
    assert (fab.alpha_max, fab.eta, fab.beta) == (0.1, 1.05, 0.9)
    assert isinstance(square, Square) and (square.queries, square.p_init, square.patience, square.rescaled) == (
        5000,
        0.8,
        0,
        False,
    )


def test_l1_version_takes_autoattacks_l1_settings_and_ends_with_square_l1():
    members = AutoAttack(eps=10, norm="l1").members()
    assert [name for name, _ in members] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    (_, ce), (_, t), (_, fab), (_, square) = members
    assert (ce.restarts, t.targets, fab.targets, square.queries) == (5, 5, 9, 5000)
    assert ce.norm == t.norm == fab.norm == square.norm == "l1" and ce._large_eps_first and t._large_eps_first


def test_rand_version_is_apgd_ce_and_dlr_with_eot_over_20_draws():
    """The official ``_set_version('rand')``: APGD-CE and untargeted APGD-DLR, 1 restart, 100 steps, EOT 20."""
    attack = AutoAttack(eps=8 / 255, version="rand")
    members = attack.members()
    assert [name for name, _ in members] == ["apgd-ce", "apgd-dlr"]
    for (_, member), loss in zip(members, ("ce", "dlr"), strict=True):
        assert isinstance(member, APGD) and (member.loss, member.targets, member.restarts, member.steps) == (
            loss,
            0,
            1,
            100,
        )
        assert (member.eot, member.rho) == (20, 0.75)
    # the record and the masking checks (which copy eot) see the 20 draws, and no Square budget
    assert (attack.eot, attack.queries) == (20, None) and attack.settings()["eot"] == 20
    assert AutoAttack(eps=0.1).eot == 1 and AutoAttack(eps=0.1).queries == 5000
    assert all(m.eot == 40 for _, m in AutoAttack(eps=0.1, version="rand", eot=40).members())
    sparse = AutoAttack(eps=10, norm="l1", version="rand").members()
    assert not any(m._large_eps_first for _, m in sparse)  # the official rand version leaves the 3ε schedule off


def test_a_suites_checks_attack_the_rand_version_as_it_does_with_eot_20(tmp_path):
    """The check points come from the built attack, so a rand cell is judged by checks that use EOT too."""
    suite = {
        "name": "rand",
        "dataset": "synthetic",
        "models": [{"model": "lenet5"}],
        "attacks": [
            {"attack": "autoattack", "norm": "linf", "eps": 0.1, "settings": {"version": "rand"}},
            {"attack": "pgd", "norm": "linf", "eps": 0.1},
        ],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    assert load_suite(tmp_path / "s.yaml").check_points() == [
        ("linf", 0.1, Adaptation(eot=20)),
        ("linf", 0.1, Adaptation()),
    ]


def test_unknown_version_and_unsupported_norm_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"unknown version 'plus' \(known: standard, rand\)"):
        AutoAttack(eps=0.1, version="plus")
    with pytest.raises(ConfigError, match="rand version runs no Square: queries does not apply"):
        AutoAttack(eps=0.1, version="rand", queries=100)
    with pytest.raises(ConfigError, match="not 'l0'"):
        AutoAttack(eps=1, norm="l0")


def test_cascade_keeps_the_first_verified_example_per_sample():
    model, x, y = tiny_model(), DATA.test.images[:32], DATA.test.labels[:32]
    keep = model(x).argmax(1) == y
    x, y = x[keep], y[keep]
    attack = AutoAttack(eps=0.08, steps=10, queries=100)
    result = attack(model, x, y)
    robust = torch.ones(len(y), dtype=torch.bool)
    for _, member in attack.members():  # the cascade written out by hand
        todo = robust.nonzero().squeeze(1)
        robust[todo[member(model, x[todo], y[todo], index=todo).success]] = False
    assert torch.equal(result.success, ~robust)
    assert torch.equal(result.extras["broken_by"] >= 0, result.success)
    assert result.extras["members"] == ["apgd-ce", "apgd-t", "fab-t", "square"]


@functools.cache
def fashion_model_and_images(n: int = 200):
    """A 10-class model trained for a few seconds on Fashion-MNIST, and n test images (the official
    package needs 10 classes for its 9 targets)."""
    data = get_dataset("fashion-mnist")
    model = get_model("lenet5", data.info, seed=0)
    train_model(
        model,
        data.train.subset(3000, seed=0),
        TrainConfig(epochs=2, batch_size=64, lr=0.05, precision="fp32"),
        info=data.info,
        progress=False,
    )
    test = data.test.subset(n, seed=0).load()
    return model.eval(), test.images, test.labels


@pytest.mark.slow
@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 2.0), ("l1", 10.0)])
def test_autoattack_agrees_with_the_official_package(norm, eps):
    official = pytest.importorskip("pyautoattack")
    model, x, y = fashion_model_and_images()
    ours = evaluate_attack(model, Split(x, y), AutoAttack(eps=eps, norm=norm), batch_size=len(x), progress=False)
    assert ours.n_unverified == 0
    adv, _ = official.AutoAttack(
        model, eps=eps, norm={"linf": "Linf", "l2": "L2", "l1": "L1"}[norm], seed=0, version="standard", device="cpu"
    ).run_standard_evaluation(x, y, batch_size=len(x))
    size = (adv - x).flatten(1).norm(p={"linf": float("inf"), "l2": 2, "l1": 1}[norm], dim=1)
    with torch.no_grad():
        theirs = 1 - ((model(adv).argmax(1) != y) & (size <= eps * (1 + 1e-5))).float().mean().item()
    assert 0 < theirs < ours.clean_accuracy - 0.3  # a figure that tells attacks apart
    # Each package draws its own random starts and Square proposals, and the thread count moves float order,
    # so an image near the boundary can fall either way (L1 on one thread: ours 0.345, theirs 0.355). Ours,
    # every example verified, must never be weaker by more than one image in 200, nor apart by over 4 images.
    assert ours.robust_accuracy <= theirs + 0.005 + 1e-6
    assert abs(ours.robust_accuracy - theirs) <= 0.02 + 1e-6


@pytest.mark.slow
def test_rand_version_agrees_with_the_official_package_on_a_randomised_defense():
    """``version="rand"`` on the gaussian-noise defense (σ = 0.1) vs the official package's rand version.

    The official package judges a randomised model by one pass, robustkit by a majority vote of passes; one
    pass moves with the draw (the official figure read by one more pass: 0.285 or 0.345 on two noise streams),
    so both packages' examples are judged here by the same vote, and must agree within 2 images in 200
    (measured on one thread: ours 0.300, theirs 0.305; 0.295 on another noise stream)."""
    official = pytest.importorskip("pyautoattack")
    model, x, y = fashion_model_and_images()
    noisy = DEFENSES.build("gaussian-noise", eps=0.1).wrap(model).eval()
    ours = evaluate_attack(noisy, Split(x, y), AutoAttack(eps=0.1, version="rand"), batch_size=len(x), progress=False)
    assert ours.n_unverified == 0
    with fixed_draws(noisy):  # the official run draws from the noise's seed too: the test is reproducible
        adv, _ = official.AutoAttack(
            noisy, eps=0.1, norm="Linf", seed=0, version="rand", device="cpu"
        ).run_standard_evaluation(x, y, batch_size=len(x))
    inside = (adv - x).flatten(1).abs().amax(1) <= 0.1 * (1 + 1e-5)
    theirs = 1 - ((predict(noisy, adv) != y) & inside).float().mean().item()
    assert 0 < theirs < ours.clean_accuracy - 0.3  # a figure that tells attacks apart
    assert abs(ours.robust_accuracy - theirs) <= 2 / 200 + 1e-6
