"""Attacks by the field's rules: hand-written references, and invariants over every registered attack."""

import pytest
import torch
import torch.nn.functional as F
from attack_fixtures import tiny_batch, tiny_model

from attacks import FGSM, PGD
from robustkit import get_attack
from robustkit.errors import ConfigError
from robustkit.per_sample_random import SampleRandom
from robustkit.registry import ATTACKS

EPS = 0.15


def reference_fgsm(model, x, y, eps):
    x = x.clone().requires_grad_(True)
    F.cross_entropy(model(x), y).backward()
    return (x + eps * x.grad.sign()).clamp(0, 1).detach()


def reference_pgd(model, x, y, eps, steps, alpha, seed):
    """Madry et al.'s PGD written out plainly, drawing the random start the same way (per sample)."""
    u = SampleRandom(seed, torch.arange(len(x))).rand(*x.shape[1:])
    x_adv = (x + (2 * u - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        x_adv = x_adv.clone().requires_grad_(True)
        F.cross_entropy(model(x_adv), y, reduction="sum").backward()
        x_adv = x_adv + alpha * x_adv.grad.sign()
        x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1).detach()
    return x_adv


def test_fgsm_matches_reference():
    model, (x, y) = tiny_model(), tiny_batch()
    result = FGSM(eps=EPS)(model, x, y)
    assert torch.allclose(result.x_adv, reference_fgsm(model, x, y, EPS), atol=1e-6)


def test_pgd_matches_reference_for_the_same_seed():
    model, (x, y) = tiny_model(), tiny_batch()
    ours = PGD(eps=EPS, steps=7, step_size=0.04, early_stop=False, seed=3)(model, x, y)
    ref = reference_pgd(model, x, y, EPS, 7, 0.04, seed=3)
    assert torch.allclose(ours.x_adv, ref, atol=1e-5)
    assert torch.equal(ours.success, model(ref).argmax(1) != y)
    assert ours.queries.tolist() == [7] * len(y)


def test_early_stop_spends_fewer_passes_and_keeps_every_success():
    model, (x, y) = tiny_model(), tiny_batch()
    full = PGD(eps=EPS, steps=20, early_stop=False)(model, x, y)
    early = PGD(eps=EPS, steps=20, early_stop=True)(model, x, y)
    assert early.queries.sum() < full.queries.sum()
    assert early.success.float().mean() >= full.success.float().mean() - 1e-9
    assert (early.queries[early.success] <= 20).all()


def test_attacks_reduce_accuracy_and_pgd_beats_fgsm():
    model, (x, y) = tiny_model(), tiny_batch(64)
    clean_wrong = (model(x).argmax(1) != y).float().mean()
    fgsm = FGSM(eps=EPS)(model, x, y).success.float().mean()
    pgd = PGD(eps=EPS, steps=20)(model, x, y).success.float().mean()
    assert pgd >= fgsm > clean_wrong + 0.2


def test_targeted_pgd_reaches_the_target():
    model, (x, y) = tiny_model(), tiny_batch()
    target = (y + 1) % 4
    result = PGD(eps=0.3, steps=30)(model, x, y, target=target)
    assert result.success.float().mean() > 0.8
    assert torch.equal(result.success, model(result.x_adv).argmax(1) == target)
    with pytest.raises(ConfigError, match="target equals"):
        PGD(eps=0.3)(model, x, y, target=y)


def test_l2_pgd_stays_in_the_l2_ball():
    model, (x, y) = tiny_model(), tiny_batch()
    result = PGD(eps=1.0, norm="l2", steps=20)(model, x, y)
    assert ((result.x_adv - x).flatten(1).norm(dim=1) <= 1.0 + 1e-5).all()
    assert result.success.float().mean() > 0.3
    assert torch.allclose(result.norms, (result.x_adv - x).flatten(1).norm(dim=1), atol=1e-6)


def test_restarts_are_never_worse_than_one_run():
    model, (x, y) = tiny_model(), tiny_batch(64)
    for loss in ("ce", "margin"):
        one = PGD(eps=0.08, steps=5, loss=loss)(model, x, y).success
        three = PGD(eps=0.08, steps=5, restarts=3, loss=loss)(model, x, y).success
        assert (three | ~one).all()  # every sample one run broke, three runs break too


def test_margin_loss_is_positive_exactly_when_misclassified():
    from robustkit.losses import attack_loss

    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    y = torch.tensor([0, 0])
    assert attack_loss(logits, y, None, "margin").tolist() == [-2.0, 2.0]
    assert attack_loss(logits, y, torch.tensor([2, 1]), "margin").tolist() == [-3.0, 1.0]


def test_bad_inputs_are_one_line_errors():
    model, (x, y) = tiny_model(), tiny_batch(4)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        PGD(eps=0.1)(model, x * 3 - 1, y)
    with pytest.raises(ConfigError, match="labels"):
        PGD(eps=0.1)(model, x, y[:2])
    with pytest.raises(ConfigError, match="eps"):
        PGD(eps=-1)
    with pytest.raises(ConfigError, match="norm"):
        PGD(eps=0.1, norm="l7")
    with pytest.raises(ConfigError, match="steps"):
        get_attack("pgd", eps=0.1, steps=0)


# ---- invariants, parametrised over the registry: every attack, present and future ----


BUDGETS = {"linf": EPS, "l2": 1.0, "l1": 4.0, "l0": 2, "spatial": 30, "patch": 4, "flow": 20, "fooling": 0.99}
# Threat models without a clean image (fooling): y names the class each image is sought for, and success
# is a verified confident image of it, not a misclassification of y. Their own check is in test_fooling.py.
NO_CLEAN_IMAGE = {"fooling"}
QUICK = {  # keep search attacks short in invariant tests
    "one-pixel": dict(population=16, generations=4),
    "square": dict(queries=50),
    "sparse-rs": dict(queries=50),
    "apgd": dict(steps=10),
    "ensemble": dict(steps=5, queries=50),
    "fast-ensemble": dict(steps=5, queries=50),
    "autoattack": dict(steps=5, queries=50),
    "fab": dict(steps=10),
    "patch": dict(steps=4),
    "patch-rs": dict(queries=50),
    "hopskipjump": dict(queries=100),
    "rays": dict(queries=100),
    "universal-patch": dict(passes=1),
    "stadv": dict(steps=10),
    "fooling": dict(steps=10),
    "fmn": dict(steps=10),
    "cw": dict(binary_steps=2, steps=10),
}
CASES = [(name, norm) for name in ATTACKS.list() for norm in ATTACKS.get(name).norms]


def build(name, **settings):
    return get_attack(name, **{**QUICK.get(name, {}), **settings})


@pytest.fixture(params=ATTACKS.list())
def attack_name(request):
    return request.param


@pytest.mark.parametrize("attack_name, norm", CASES)
def test_invariants_of_every_registered_attack(attack_name, norm):
    eps = BUDGETS[norm]
    model, (x, y) = tiny_model(), tiny_batch(16)
    model.train()  # the attack must evaluate in eval mode and hand training mode back
    model.net[0].eval()  # and restore a mixed mode module by module
    modes = [m.training for m in model.modules()]
    params = {k: v.clone() for k, v in model.state_dict().items()}
    requires = [p.requires_grad for p in model.parameters()]
    x_before, y_before = x.clone(), y.clone()

    attack = build(attack_name, eps=eps, norm=norm, seed=1)
    result = attack(model, x, y)

    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype
    assert result.success.shape == y.shape and result.success.dtype == torch.bool
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert (
        attack.bound(x.shape[1:]).contains(x, result.x_adv, result.evidence).all()
    )  # spatial: its reported transform; min-norm: the box
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    assert [p.requires_grad for p in model.parameters()] == requires
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(x, x_before) and torch.equal(y, y_before)
    again = build(attack_name, eps=eps, norm=norm, seed=1)(model, x, y)
    assert torch.equal(again.x_adv, result.x_adv) and torch.equal(again.success, result.success)
    with torch.no_grad():
        model.eval()
        if norm in NO_CLEAN_IMAGE:
            probs = model(result.x_adv).softmax(1)
            confident = (probs.argmax(1) == y) & (probs.gather(1, y[:, None]).squeeze(1) >= eps)
            assert torch.equal(result.success, confident) and torch.equal(result.evidence["target"], y)
        else:
            assert torch.equal(result.success, model(result.x_adv).argmax(1) != y)


def test_attacks_keep_reduced_precision_inputs(attack_name):
    model, (x, y) = tiny_model(), tiny_batch(8)
    norm = ATTACKS.get(attack_name).norms[0]
    attack = build(attack_name, eps=BUDGETS[norm], norm=norm)
    result = attack(model.to(torch.bfloat16), x.to(torch.bfloat16), y)
    assert result.x_adv.dtype == torch.bfloat16
    bound = attack.bound(x.shape[1:])  # the ε-ball, or for a minimum-norm attack the box
    assert bound.contains(x.to(torch.bfloat16), result.x_adv, result.evidence).all()
    autocast = build(attack_name, eps=BUDGETS[norm], norm=norm, precision="bf16")(tiny_model(), x, y)
    assert autocast.x_adv.dtype == torch.float32 and bound.contains(x, autocast.x_adv, autocast.evidence).all()


# ---- regressions found in review ----


def test_attacks_work_inside_no_grad():
    model, (x, y) = tiny_model(), tiny_batch(8)
    with torch.no_grad():
        inside = PGD(eps=EPS)(model, x, y)
    assert torch.equal(inside.x_adv, PGD(eps=EPS)(model, x, y).x_adv)


def test_l2_steps_in_float16_never_produce_nan():
    model, (x, y) = tiny_model(), tiny_batch(8)
    result = PGD(eps=1.0, norm="l2", steps=5)(model.half(), x.half(), y)
    assert not torch.isnan(result.x_adv).any() and (result.norms <= 1.0 + 1e-2).all()


def test_low_precision_tolerance_still_rejects_a_step_outside_the_ball():
    x = torch.full((1, 1, 8, 8), 0.5, dtype=torch.bfloat16)
    threat = get_attack("pgd", eps=8 / 255).threat
    assert threat.contains(x, x + 8 / 255).all()
    assert not threat.contains(x, x + 1.3 * 8 / 255).any()


def test_nan_pixels_and_pointless_restarts_are_refused():
    model, (x, y) = tiny_model(), tiny_batch(4)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ConfigError, match="NaN"):
        PGD(eps=0.1)(model, x, y)
    with pytest.raises(ConfigError, match="random_start"):
        PGD(eps=0.1, restarts=3, random_start=False)


@pytest.mark.parametrize("bad", [10, -1])
def test_labels_outside_the_models_classes_are_one_clear_line(bad):
    model, (x, y) = tiny_model(), tiny_batch(8)
    y[3] = bad
    with pytest.raises(ConfigError, match=rf"y holds labels outside 0…3 .*: {bad}$"):
        PGD(eps=EPS)(model, x, y)
    target = (tiny_batch(8)[1] + 1) % 4
    target[0] = 7
    with pytest.raises(ConfigError, match="target holds labels outside 0…3"):
        PGD(eps=EPS)(model, x, tiny_batch(8)[1], target=target)


def test_an_attack_refuses_the_settings_it_cannot_honour():
    # gradient settings belong to the gradient attacks; the others do not take them at all
    for name, setting in [
        ("one-pixel", {"bpda": True}),
        ("one-pixel", {"loss": "margin"}),
        ("one-pixel", {"eot": 4}),
        ("square", {"bpda": True}),
        ("deepfool", {"loss": "margin"}),
        ("ensemble", {"loss": "margin"}),
        ("autoattack", {"loss": "margin"}),
        ("fab", {"loss": "ce"}),
        ("sparse-rs", {"bpda": True}),
    ]:
        with pytest.raises(ConfigError, match=f"unexpected keyword argument '{next(iter(setting))}'"):
            ATTACKS.build(name, eps=1 if name in ("one-pixel", "sparse-rs") else 0.1, **setting)
    for name in ("fgsm", "pgd", "apgd", "universal"):
        assert {"loss", "eot", "bpda"} <= set(ATTACKS.build(name, eps=0.1).settings())


def test_deepfool_honours_bpda_and_eot():
    from torch import nn

    from attacks import DeepFool
    from defenses.transforms import BitDepth

    masked = nn.Sequential(BitDepth(bits=3), tiny_model()).eval()  # rounding: the input gradient is exactly 0
    x, y = tiny_batch(32)
    plain = DeepFool(eps=3.0, norm="l2")(masked, x, y)
    straight = DeepFool(eps=3.0, norm="l2", bpda=True)(masked, x, y)
    fooled_clean = masked(x).argmax(1) != y
    assert torch.equal(plain.success, fooled_clean)  # no gradient: DeepFool cannot move at all
    assert straight.success.sum() > plain.success.sum() + 10  # through the identity it finds the boundary
    model = tiny_model()
    once, thrice = DeepFool(eps=3.0, norm="l2")(model, x, y), DeepFool(eps=3.0, norm="l2", eot=3)(model, x, y)
    assert torch.allclose(once.x_adv, thrice.x_adv, atol=1e-5)  # a deterministic model: the mean is one pass
    assert torch.equal(thrice.queries, 3 * once.queries)
