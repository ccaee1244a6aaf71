"""Square attack: forward passes only, every query counted, as strong as torchattacks' Square, and its L1
version as strong as the official AutoAttack package's."""

import pytest
import torch
from attack_fixtures import tiny_batch, tiny_model
from torch import nn

from attacks import Square
from robustkit.data.base import Split
from robustkit.errors import ConfigError
from robustkit.evaluation.engine import evaluate_attack
from robustkit.losses import attack_loss
from robustkit.per_sample_random import SampleRandom


class _NoBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits):
        return logits.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("a black-box attack asked for a gradient")


class ForwardOnly(nn.Module):
    """The tiny model behind an output whose backward raises; it logs each pass's batch size and grad mode."""

    def __init__(self):
        super().__init__()
        self.net = tiny_model()
        self.passes = []  # (images in the pass, autograd enabled)

    def forward(self, x):
        self.passes.append((len(x), torch.is_grad_enabled()))
        return _NoBackward.apply(self.net(x))


@pytest.mark.parametrize("norm, eps", [("linf", 0.15), ("l2", 1.0), ("l1", 6.0)])
def test_square_needs_only_forward_passes_and_counts_every_one(norm, eps):
    x, y = tiny_batch(16)
    guard = ForwardOnly()
    with pytest.raises(RuntimeError, match="gradient"):  # the guard bites whoever asks for a gradient
        guard(x.clone().requires_grad_()).sum().backward()

    model = ForwardOnly()
    result = Square(eps=eps, norm=norm, queries=100)(model, x, y)
    assert result.success.any()
    assert model.passes and not any(grad for _, grad in model.passes)
    assert all(p.grad is None for p in model.parameters())
    # every image the attack sent through the model is in ``queries``; the base class probes the class
    # count on one image (to check the labels) and re-checks every image once more
    assert sum(size for size, _ in model.passes) == result.queries.sum().item() + 1 + len(x)


@pytest.mark.parametrize("norm, eps, gain", [("linf", 0.15, 0.7), ("l2", 1.0, 0.25), ("l1", 6.0, 0.4)])
def test_square_fools_the_tiny_model_and_never_loses_ground(norm, eps, gain):
    model, (x, y) = tiny_model(), tiny_batch(48)
    clean = (model(x).argmax(1) != y).float().mean()
    start = Square(eps=eps, norm=norm, queries=1)(model, x, y)  # the initial point alone: same seed, same draws
    short = Square(eps=eps, norm=norm, queries=30)(model, x, y)
    long = Square(eps=eps, norm=norm, queries=250)(model, x, y)
    rate = [r.success.float().mean() for r in (start, short, long)]
    assert rate[2] > rate[1] >= rate[0] and rate[2] > clean + gain
    with torch.no_grad():  # only improvements are kept: no sample ends below its starting margin
        margin = [attack_loss(model(r.x_adv), y, None, "margin") for r in (start, long)]
    assert (margin[1] >= margin[0] - 1e-5).all()
    delta = long.x_adv - x
    if norm == "linf":  # every pixel sits at x ± ε unless the box [0, 1] cut it short
        at_edge = ((delta.abs() - eps).abs() < 1e-6) | (long.x_adv == 0) | (long.x_adv == 1)
        assert at_edge.all()
    else:  # the budget is spent, not wasted: ‖δ‖ = ε up to what the box clips away
        assert (long.norms <= eps * (1 + 1e-5)).all() and long.norms.mean() > 0.9 * eps


def test_queries_stay_within_budget_and_fooled_samples_stop_early():
    model, (x, y) = tiny_model(), tiny_batch(32)
    result = Square(eps=0.15, queries=200)(model, x, y)
    spent, fooled = result.queries, result.success
    assert spent.dtype == torch.int64 and spent.shape == y.shape
    assert (spent >= 1).all() and (spent <= 200).all()
    assert (spent[~fooled] == 200).all()
    assert fooled.sum() >= 16 and spent[fooled].float().mean() < 100
    with pytest.raises(ConfigError, match="queries"):
        Square(eps=0.1, queries=0)
    with pytest.raises(ConfigError, match="attacks linf, l2, l1, not 'l0'"):
        Square(eps=2, norm="l0")


class Unfoolable(nn.Module):
    """Class 0, whatever the input, by the same margin: no query can fool it or raise the loss."""

    def forward(self, x):
        return torch.cat([torch.full((len(x), 1), 10.0), torch.zeros(len(x), 3)], 1)


def test_patience_stops_a_sample_after_that_many_queries_without_gain_and_changes_nothing_while_it_climbs():
    x, y = tiny_batch(8)[0], torch.zeros(8, dtype=torch.long)
    assert (Square(eps=0.1, queries=300)(Unfoolable(), x, y).queries == 300).all()
    stopped = Square(eps=0.1, queries=300, patience=40)(Unfoolable(), x, y)
    assert (stopped.queries == 41).all() and not stopped.success.any()  # the start, then 40 fruitless queries
    # with a patience longer than the budget, the same seed gives the same result as without
    model, (x, y) = tiny_model(), tiny_batch(32)
    full = Square(eps=0.15, queries=200)(model, x, y)
    assert torch.equal(Square(eps=0.15, queries=200, patience=199)(model, x, y).x_adv, full.x_adv)
    with pytest.raises(ConfigError, match="patience"):
        Square(eps=0.1, patience=-1)


@torch.no_grad()
def _gains(model, x, y, square: Square) -> list[list[int]]:
    """Per sample, the queries (1-based) at which the full-budget run's best margin rose: a hand-written
    replay of the search, proposal by proposal, so patience's stopping point can be read off it."""
    rng = SampleRandom(square.seed, torch.arange(len(x)))
    best = square._start(x, rng)
    loss = attack_loss(model(best), y, None, "margin")
    gains = [[] for _ in range(len(x))]
    for step in range(1, square.queries):
        cand = square._linf_step(x, best, square._p(step), rng)
        new = attack_loss(model(cand), y, None, "margin")
        for i in (new > loss).nonzero().squeeze(1).tolist():
            gains[i].append(step + 1)
        best = torch.where((new > loss)[:, None, None, None], cand, best)
        loss = torch.maximum(new, loss)
    return gains


def test_patience_is_judged_per_sample_so_no_outcome_depends_on_the_batch():
    model, (x, y) = tiny_model(), tiny_batch(32)
    square = Square(eps=0.1, queries=150, patience=12, seed=2)
    whole = square(model, x, y, index=torch.arange(32))
    order = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    for part in (order[:1], order[1:9], order[9:]):  # alone, and in batches of other compositions
        alone = square(model, x[part], y[part], index=part)
        assert torch.equal(alone.x_adv, whole.x_adv[part]) and torch.equal(alone.queries, whole.queries[part])
        assert torch.equal(alone.success, whole.success[part])
    # each unfooled sample stopped exactly 12 queries after its own last gain (or at the budget), per the replay
    gains = _gains(model, x, y, Square(eps=0.1, queries=150, seed=2))
    unfooled = (~whole.success).nonzero().squeeze(1).tolist()
    for i in unfooled:
        rises = [0] + [q - 1 for q in gains[i]]  # the steps at which sample i's best rose (0: the start)
        stop = next((a + 12 for a, b in zip(rises, rises[1:] + [10**9], strict=False) if b - a > 12), 149)
        assert whole.queries[i] == min(stop, 149) + 1, i
    stops = {whole.queries[i].item() for i in unfooled}
    assert len(stops) > 2  # the samples stopped at many different queries: each at its own, not the batch's


def test_targeted_square_reaches_the_target():
    model, (x, y) = tiny_model(), tiny_batch(32)
    target = (y + 1) % 4
    result = Square(eps=0.2, queries=200)(model, x, y, target=target)
    assert result.success.float().mean() > 0.7
    with torch.no_grad():
        assert torch.equal(result.success, model(result.x_adv).argmax(1) == target)


def test_as_strong_as_torchattacks_square_on_the_same_budget():
    torchattacks = pytest.importorskip("torchattacks")
    model, (x, y) = tiny_model(), tiny_batch(48)
    with torch.random.fork_rng(devices=[]):  # torchattacks seeds the global RNG
        # its loop runs n_queries updates after the initial point: 199 + 1 = our budget of 200
        peer = torchattacks.Square(
            model, norm="Linf", eps=0.15, n_queries=199, n_restarts=1, p_init=0.8, loss="margin", seed=0
        )
        peer_adv = peer(x, y)
    with torch.no_grad():
        theirs = (model(peer_adv).argmax(1) != y).float().mean()
    ours = Square(eps=0.15, queries=200)(model, x, y).success.float().mean()
    assert theirs > 0.3  # the peer ran for real
    assert ours >= theirs - 0.1


def test_an_l1_step_moves_window_two_into_window_one_and_spends_the_unused_budget():
    """On grey images away from the box, one step from x holds exactly ε of mass in one s×s window, half
    of it positive and half negative (the ± pattern); a second step keeps that mass (window 2's content
    goes to window 1) and leaves nothing where it emptied window 2 unless window 1 covers it."""
    x = torch.full((64, 1, 16, 16), 0.5)
    attack, rng = Square(eps=1.0, norm="l1"), SampleRandom(0, torch.arange(64))
    once = attack._l1_step(x, x.clone(), 0.05, rng) - x  # p = 0.05: s = round(√12.8) = 4, made odd: 5
    assert torch.allclose(once.flatten(1).abs().sum(1), torch.ones(64), atol=1e-5)
    assert torch.allclose(once.clamp_min(0).flatten(1).sum(1), torch.full((64,), 0.5), atol=1e-5)
    rows, cols = (once != 0).any(3).flatten(1), (once != 0).any(2).flatten(1)
    assert (rows.sum(1) == 5).all() and (cols.sum(1) == 5).all()  # one 5×5 window, every cell moved
    half = x + once / 2  # half the budget used: the step hands the other half to window 1
    twice = attack._l1_step(x, half, 0.05, rng) - x
    assert torch.allclose(twice.flatten(1).abs().sum(1), torch.ones(64), atol=1e-5)


@pytest.mark.slow
def test_square_l1_is_as_strong_as_the_official_autoattack_square_l1():
    """Square-L1 ("Mind the box", ICML 2021) against the official package's, on the same 200 Fashion-MNIST
    images, model, ε = 10 and 1000 queries (p_init 0.8, unrescaled schedule, margin loss, as AutoAttack runs
    it). Measured on one thread, seeds 0, 1, 2: ours 0.500, 0.505, 0.510; theirs 0.515, 0.500, 0.510. Each
    draws its own windows, so the seed-to-seed spread of either alone (3 images) sets the tolerance: 4 images
    in 200, the same as the AutoAttack agreement test. Every example of ours is verified by the engine."""
    official = pytest.importorskip("pyautoattack.square")
    from test_autoattack import fashion_model_and_images

    model, x, y = fashion_model_and_images()
    settings = dict(p_init=0.8, rescaled=False, queries=1000)
    ours = evaluate_attack(
        model, Split(x, y), Square(eps=10.0, norm="l1", **settings), batch_size=len(x), progress=False
    )
    assert ours.n_unverified == 0  # inside the L1 ball and [0, 1], and misclassified
    peer = official.SquareAttack(
        model, norm="L1", eps=10.0, n_queries=1000, p_init=0.8, seed=0, resc_schedule=False, device="cpu"
    )
    with torch.random.fork_rng(devices=[]):  # it seeds the global RNG
        adv = peer.perturb(x, y)
    size = (adv - x).flatten(1).abs().sum(1)
    with torch.no_grad():
        theirs = 1 - ((model(adv).argmax(1) != y) & (size <= 10.0 * (1 + 1e-5))).float().mean().item()
    assert theirs < ours.clean_accuracy - 0.1  # the peer ran for real
    assert abs(ours.robust_accuracy - theirs) <= 4 / 200 + 1e-6
