"""Sparse-RS: k pixels at colour-cube corners, re-verified successes, per-sample randomness, exhaustive-search quality.

Model and caller tensors left untouched (parameters, buffers, modes, grads) is checked for every
registered attack, sparse-rs included, by ``test_attacks.test_invariants_of_every_registered_attack``.
"""

import pytest
import torch
from attack_fixtures import DATA, tiny_batch, tiny_model
from test_square import ForwardOnly, Unfoolable
from torch import nn

from attacks import SparseRS
from robustkit.data.base import Split
from robustkit.errors import ConfigError
from robustkit.evaluation.engine import evaluate_attack
from robustkit.losses import attack_loss
from robustkit.registry import ATTACKS


def changed_pixels(x_adv, x):
    """N × H × W: the pixel positions where any channel differs."""
    return (x_adv - x).abs().amax(1) > 0


def independently_verified(model, result, x, y, k, target=None):
    """What the base class claims, recomputed here: ≤ k pixels, inside [0, 1], a fresh pass fooled (or on target)."""
    changed = changed_pixels(result.x_adv, x).flatten(1).sum(1)
    in_box = (result.x_adv >= 0).flatten(1).all(1) & (result.x_adv <= 1).flatten(1).all(1)
    with torch.no_grad():
        prediction = model.eval()(result.x_adv).argmax(1)
    fooled = prediction != y if target is None else prediction == target
    return (changed <= k) & in_box & fooled


@pytest.mark.parametrize("k", [1, 3, 10])
def test_every_counted_success_holds_up_and_changed_pixels_sit_at_corners(k):
    model, (x, y) = tiny_model(), tiny_batch(48)
    result = SparseRS(eps=k, queries=200)(model, x, y)
    assert result.success.sum() >= {1: 2, 3: 8, 10: 30}[k]  # the check has something to check
    assert torch.equal(result.success, independently_verified(model, result, x, y, k))
    changed = changed_pixels(result.x_adv, x)
    assert (changed.flatten(1).sum(1) <= k).all() and torch.equal(result.norms, changed.flatten(1).sum(1).float())
    values = result.x_adv.permute(0, 2, 3, 1)[changed]
    assert ((values == 0) | (values == 1)).all()  # the paper's colours: corners of the cube
    pixels = result.extras["pixels"]  # the set found, k distinct positions; every changed pixel is in it
    assert pixels.shape == (48, k, 2) and result.extras["values"].shape == (48, k, 1)
    flat = pixels[..., 0] * x.shape[3] + pixels[..., 1]
    assert all(len(set(row)) == k for row in flat.tolist())
    in_set = torch.zeros_like(changed.flatten(1)).scatter_(1, flat, True)
    assert not (changed.flatten(1) & ~in_set).any()


def test_more_pixels_and_more_queries_fool_more_and_no_sample_ends_below_its_start():
    model, (x, y) = tiny_model(), tiny_batch(64)
    runs = {(k, q): SparseRS(eps=k, queries=q)(model, x, y) for k in (1, 3, 10) for q in (1, 30, 300)}
    rate = {key: run.success.float().mean().item() for key, run in runs.items()}
    assert rate[(10, 300)] > rate[(3, 300)] > rate[(1, 300)] and rate[(10, 300)] > 0.9
    for k in (1, 3, 10):
        assert rate[(k, 300)] >= rate[(k, 30)] >= rate[(k, 1)]
        with torch.no_grad():  # the start is the same draw at every budget, and only non-losing moves are kept
            start, end = (attack_loss(model(runs[(k, q)].x_adv), y, None, "margin") for q in (1, 300))
        assert (end >= start - 1e-5).all()


def test_targeted_success_means_the_target():
    model, (x, y) = tiny_model(), tiny_batch(48)
    target = (y + 1) % 4
    result = SparseRS(eps=10, queries=300)(model, x, y, target=target)
    assert result.success.float().mean() > 0.6
    assert torch.equal(result.success, independently_verified(model, result, x, y, 10, target))
    with torch.no_grad():
        assert torch.equal(result.success, model(result.x_adv).argmax(1) == target)


def test_forward_passes_only_every_one_counted_and_fooled_samples_stop():
    x, y = tiny_batch(32)
    model = ForwardOnly()  # its backward raises; it logs each pass's size and grad mode
    # fp32: under the bf16 default each claimed success also costs a float32 confirmation pass
    result = SparseRS(eps=10, queries=150, precision="fp32")(model, x, y)
    assert model.passes and not any(grad for _, grad in model.passes)
    assert all(p.grad is None for p in model.parameters())
    # the base class probes the class count on one image and re-checks every image once more
    assert sum(size for size, _ in model.passes) == result.queries.sum().item() + 1 + len(x)
    spent, fooled = result.queries, result.success
    assert spent.dtype == torch.int64 and (spent >= 1).all() and (spent <= 150).all()
    assert (spent[~fooled] == 150).all() and fooled.any() and spent[fooled].float().mean() < 75
    stuck = SparseRS(eps=2, queries=40, eot=3)(Unfoolable(), x[:4], torch.zeros(4, dtype=torch.long))
    assert not stuck.success.any() and (stuck.queries == 40 * 3).all()  # eot passes count as queries


def test_a_samples_outcome_does_not_depend_on_its_batch():
    images = torch.cat([DATA.test.images, DATA.train.images])[:300]
    labels = torch.cat([DATA.test.labels, DATA.train.labels])[:300]
    attack = SparseRS(eps=2, queries=60, seed=5)
    big, small = (
        evaluate_attack(tiny_model(), Split(images, labels), attack, batch_size=size, progress=False)
        for size in (300, 50)
    )
    assert torch.equal(big.robust, small.robust) and torch.equal(big.clean_correct, small.clean_correct)
    assert torch.allclose(big.norms, small.norms, equal_nan=True)
    assert 0 < big.robust.sum() < big.clean_correct.sum()  # some broken, some not: the comparison has teeth
    # and bit for bit: the images themselves, the queries and the pixel sets, alone or in a batch
    model, (x, y) = tiny_model(), tiny_batch(40)
    whole = attack(model, x, y)
    part = attack(model, x[25:], y[25:], index=torch.arange(25, 40))
    assert torch.equal(part.x_adv, whole.x_adv[25:]) and torch.equal(part.queries, whole.queries[25:])
    assert torch.equal(part.extras["pixels"], whole.extras["pixels"][25:])


def test_defaults_cost_300_queries_per_image_and_the_papers_budget_is_a_named_choice():
    x, _ = tiny_batch(3)
    result = SparseRS()(Unfoolable(), x, torch.zeros(3, dtype=torch.long))
    assert result.queries.tolist() == [300] * 3 and (result.norms <= 1).all()
    paper = SparseRS.paper(eps=10)
    assert (paper.eps, paper.queries, paper.alpha_init, paper.precision) == (10, 10000, 0.3, "fp32")
    assert SparseRS.paper(queries=500).queries == 500


def test_alpha_follows_the_authors_schedule():
    attack = SparseRS(eps=100, queries=10000)
    assert [
        attack._moves(step, 100, 784) for step in (1, 50, 51, 200, 201, 501, 1001, 2001, 4001, 6001, 8001, 9999)
    ] == [15, 15, 7, 7, 6, 5, 3, 3, 2, 2, 1, 1]
    assert SparseRS(eps=100, queries=20000)._moves(1, 100, 784) == 30  # α_init itself before the rescaled step 1
    assert SparseRS(eps=100, queries=1000)._moves(6, 100, 784) == 7  # rescaled: step 6 of 1000 is step 60 of 10 000
    assert attack._moves(1, 700, 784) == 84  # never more than the free positions


def test_a_set_covering_the_whole_image_only_recolours():
    x, y = tiny_batch(4)
    result = SparseRS(eps=144, queries=20)(tiny_model(), x, y)  # 12 × 12 images: every pixel in the set
    assert (result.norms <= 144).all() and ((result.x_adv == 0) | (result.x_adv == 1)).all()


def test_bad_settings_are_one_line_errors():
    model, (x, y) = tiny_model(), tiny_batch(4)
    with pytest.raises(
        ConfigError, match=r"^sparse-rs: k = 145 pixels is more than the image's 12×12 = 144 positions$"
    ):
        SparseRS(eps=145)(model, x, y)
    for bad in (0, -3):
        with pytest.raises(ConfigError, match="queries ≥ 1"):
            SparseRS(queries=bad)
    with pytest.raises(ConfigError, match="alpha_init"):
        SparseRS(alpha_init=0)
    with pytest.raises(ConfigError, match="SparseRS attacks l0, not 'linf'"):
        SparseRS(eps=0.1, norm="linf")
    with pytest.raises(ConfigError, match="whole number"):
        SparseRS(eps=1.5)
    with pytest.raises(ConfigError, match="unexpected keyword argument 'bpda'"):
        ATTACKS.build("sparse-rs", eps=1, bpda=True)
    assert ATTACKS.get("sparse-rs") is SparseRS and ATTACKS.default("sparse-rs", "norm") == "l0"


class SmallColourNet(nn.Module):
    """A random-init 3-channel convnet on 6×6 images: every (pixel, corner) can be tried exhaustively."""

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # seeded weights, the global stream left alone
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 5))

    def forward(self, x):
        return self.net(x)


def exhaustive_one_pixel(model, x, y):
    """Per sample: does some single pixel set to some corner of the colour cube fool the model?"""
    n, c, h, w = x.shape
    corners = torch.tensor([[(i >> b) & 1 for b in range(c)] for i in range(2**c)], dtype=x.dtype)  # 2^C × C
    fooled = torch.zeros(n, dtype=torch.bool)
    with torch.no_grad():
        for position in range(h * w):
            for corner in corners:
                trial = x.clone()
                trial[:, :, position // w, position % w] = corner
                fooled |= model(trial).argmax(1) != y
    return fooled


@pytest.mark.parametrize("model_name", ["lenet5-grey-12x12", "convnet-colour-6x6"])
def test_with_k_1_finds_a_fooling_pixel_wherever_exhaustive_search_does(model_name):
    """k = 1 searches a subset of (position × corner), so it can never beat exhaustive search; with a
    budget of ~3× the candidates it must match it on nearly every sample. A given fooling candidate
    is missed with probability (1 − 1/candidates)^queries ≈ e^−3 ≈ 5 %, so we demand ≥ 90 % of them."""
    if model_name.startswith("lenet5"):
        model = tiny_model()  # 144 positions × 2 corners
        x = torch.cat([DATA.test.images, DATA.train.images])[:256]
        y = torch.cat([DATA.test.labels, DATA.train.labels])[:256]
    else:
        model = SmallColourNet().eval()
        x = torch.rand(64, 3, 6, 6, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            y = model(x).argmax(1)  # every sample starts correctly classified; 36 positions × 8 corners
    candidates = x.shape[2] * x.shape[3] * 2 ** x.shape[1]
    with torch.no_grad():
        clean_wrong = model(x).argmax(1) != y
    x, y = x[~clean_wrong], y[~clean_wrong]
    reachable = exhaustive_one_pixel(model, x, y)
    assert 5 <= reachable.sum() < len(y)  # some can be fooled with one pixel, some cannot
    result = SparseRS(eps=1, queries=3 * candidates)(model, x, y)
    assert not (result.success & ~reachable).any()  # never a success exhaustive search does not know
    assert result.success.sum() >= 0.9 * reachable.sum()
