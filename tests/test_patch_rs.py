"""Patch-RS: verified patches from forward passes only, the closed-form optimum on linear models, per-sample draws.

Model and caller tensors left untouched (parameters, buffers, modes, grads) and same seed → same
result are checked for every registered attack, patch-rs included, by
``test_attacks.test_invariants_of_every_registered_attack``; batch-size independence by
``test_sample_random``.
"""

import pytest
import torch
from attack_fixtures import tiny_batch, tiny_model
from test_square import ForwardOnly, Unfoolable
from torch import nn

from attacks import PatchRS
from attacks.patch import paste
from robustkit.errors import ConfigError
from robustkit.losses import attack_loss
from robustkit.predict import predict
from robustkit.registry import ATTACKS


def test_examples_change_only_the_reported_window_and_pass_the_check():
    model, (x, y) = tiny_model(), tiny_batch(48)
    result = PatchRS(eps=3, queries=200)(model, x, y)
    assert result.success.float().mean() > 0.4
    assert PatchRS(eps=3).threat.contains(x, result.x_adv).all() and (result.norms <= 3).all()
    rows, cols, patch = result.evidence["row"], result.evidence["col"], result.extras["patch"]
    assert patch.shape == (48, 1, 3, 3) and ((patch == 0) | (patch == 1)).all()  # colour-cube corners only
    assert torch.equal(result.x_adv, paste(x, patch, rows, cols))  # the window is where the evidence says
    assert torch.equal(result.success, predict(model, result.x_adv) != y)


def test_forward_passes_only_every_one_counted_and_fooled_samples_stop():
    x, y = tiny_batch(32)
    model = ForwardOnly()  # its backward raises; it logs each pass's size and grad mode
    result = PatchRS(eps=3, queries=120, precision="fp32")(model, x, y)
    assert model.passes and not any(grad for _, grad in model.passes)
    assert all(p.grad is None for p in model.parameters())
    # the base class probes the class count on one image and re-checks every image once more
    assert sum(size for size, _ in model.passes) == result.queries.sum().item() + 1 + len(x)
    spent, fooled = result.queries, result.success
    assert (spent >= 1).all() and (spent[~fooled] == 120).all() and fooled.any() and spent[fooled].float().mean() < 60
    stuck = PatchRS(eps=2, queries=30, eot=2)(Unfoolable(), x[:4], torch.zeros(4, dtype=torch.long))
    assert not stuck.success.any() and (stuck.queries == 30 * 2).all()  # eot passes count as queries


def test_targeted_success_means_the_target_and_more_queries_never_hurt():
    model, (x, y) = tiny_model(), tiny_batch(48)
    target = (y + 1) % 4
    runs = {q: PatchRS(eps=4, queries=q)(model, x, y, target=target) for q in (1, 30, 300)}
    assert runs[300].success.float().mean() > 0.3
    assert torch.equal(runs[300].success, predict(model, runs[300].x_adv) == target)
    assert (runs[300].success | ~runs[30].success).all() and (runs[30].success | ~runs[1].success).all()
    with torch.no_grad():  # the start is the same draw at every budget, and only non-losing moves are kept
        start, end = (attack_loss(model(runs[q].x_adv), y, target, "margin") for q in (1, 300))
    assert (end >= start - 1e-5).all()


class Linear(nn.Module):
    """Logits W·x + b on flattened images, seeded."""

    def __init__(self, shape: tuple[int, int, int], classes: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(classes, *shape, generator=g))
        self.bias = nn.Parameter(torch.randn(classes, generator=g))

    def forward(self, x):
        return x.flatten(1) @ self.weight.flatten(1).T + self.bias


def typical_images(model: Linear, n: int) -> torch.Tensor:
    """Noisy images leaning toward a random class's weights: clean margins large enough that a patch
    fools only some of them."""
    g = torch.Generator().manual_seed(0)
    lean = model.weight.detach()[torch.randint(len(model.bias), (n,), generator=g)]
    return (0.5 + 0.3 * lean + 0.3 * torch.randn(lean.shape, generator=g)).clamp(0, 1)


def best_margin_at(
    model: Linear, x: torch.Tensor, y: torch.Tensor, side: int, rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """Per sample, the largest margin max_{j≠y} z_j − z_y any side×side patch at (rows, cols) reaches, exactly.

    For class j, z_j − z_y is linear in the window's pixels, so its maximum over [0, 1] puts each
    pixel at 1 where w_j − w_y > 0 and at 0 elsewhere (a corner of the box); the margin is the
    largest of these over j."""
    height, width = x.shape[-2:]
    inside = torch.zeros(len(x), 1, height, width, dtype=torch.bool)
    for i, (row, col) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        inside[i, :, row : row + side, col : col + side] = True
    w, b = model.weight.detach(), model.bias.detach()
    best = torch.full((len(x),), float("-inf"))
    for j in range(len(b)):
        diff = w[j][None] - w[y]  # N×C×H×W
        value = (diff * x * ~inside).flatten(1).sum(1) + (diff.clamp_min(0) * inside).flatten(1).sum(1) + b[j] - b[y]
        best = torch.where(y != j, torch.maximum(best, value), best)
    return best


def best_margin(model: Linear, x: torch.Tensor, y: torch.Tensor, side: int) -> torch.Tensor:
    """The same over every place of the window: the best any patch can do."""
    height, width = x.shape[-2:]
    places = [(r, c) for r in range(height - side + 1) for c in range(width - side + 1)]
    return torch.stack(
        [best_margin_at(model, x, y, side, torch.full((len(x),), r), torch.full((len(x),), c)) for r, c in places]
    ).amax(0)


def margin(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return attack_loss(model(x_adv), y, None, "margin")


@pytest.mark.parametrize("channels, size, side", [(1, 4, 4), (1, 8, 3), (3, 6, 2)])
def test_without_early_stop_the_search_ends_at_the_exact_optimum_for_its_place_on_a_two_class_linear_model(
    channels, size, side
):
    """Two classes: at a fixed place the margin is separable in the pixels, and repainting a pixel that
    sits at the wrong corner is always an improvement (a stale proposal flips to the other corner), so
    at the place it ends on the search must reach the closed-form optimum itself. With one place (a
    window the size of the image) that is the global optimum."""
    model = Linear((channels, size, size), 2, seed=size).eval()
    x = typical_images(model, 64)
    y = predict(model, x)
    result = PatchRS(eps=side, queries=600, precision="fp32", early_stop=False)(model, x, y)
    assert (result.queries == 600).all()
    reached = margin(model, result.x_adv, y)
    at_place = best_margin_at(model, x, y, side, result.evidence["row"], result.evidence["col"])
    assert torch.allclose(reached, at_place, atol=1e-4), (reached - at_place).abs().max()
    assert (reached <= best_margin(model, x, y, side) + 1e-4).all()
    if size == side:
        assert torch.allclose(reached, best_margin(model, x, y, side), atol=1e-4)


@pytest.mark.parametrize("classes, channels, size, side", [(2, 1, 8, 3), (2, 3, 6, 2), (4, 3, 7, 3), (10, 1, 9, 4)])
def test_success_agrees_with_the_closed_form_optimum_of_a_linear_model(classes, channels, size, side):
    """Never a success the closed form rules out; wherever the optimum at the place the search ended on
    fools the model, the search fooled it (on nearly every sample: with more than two classes the
    margin is a maximum of linear functions, and a local optimum for one rival class can hold it).
    The place is the weak part: a patch fitted to one place is rarely as good at a random other, so
    moves are seldom kept late in the search; here 21 of the 47 samples some place can fool (4 classes)."""
    model = Linear((channels, size, size), classes, seed=size + classes).eval()
    x = typical_images(model, 96)
    y = predict(model, x)  # every sample starts correctly classified
    reachable = best_margin(model, x, y, side) > 0
    assert 10 <= reachable.sum() <= 86, reachable.sum()  # some can be fooled, some cannot: the test has teeth
    result = PatchRS(eps=side, queries=1000, precision="fp32")(model, x, y)
    assert not (result.success & ~reachable).any()
    at_place = best_margin_at(model, x, y, side, result.evidence["row"], result.evidence["col"]) > 0
    assert result.success.sum() >= 0.9 * at_place.sum() and result.success.sum() >= 0.4 * reachable.sum(), (
        result.success.sum(),
        at_place.sum(),
        reachable.sum(),
    )


def test_defaults_and_the_papers_budget_and_bad_settings():
    x, _ = tiny_batch(3)
    result = PatchRS()(Unfoolable(), x, torch.zeros(3, dtype=torch.long))
    assert result.queries.tolist() == [300] * 3 and (result.norms <= 4).all()
    paper = PatchRS.paper(eps=8)
    assert (paper.eps, paper.queries, paper.alpha_init, paper.precision) == (8, 10000, 0.4, "fp32")
    attack = PatchRS(eps=10, queries=10000)
    assert [attack._square(step, 10) for step in (1, 10, 11, 50, 51, 201, 501, 1001, 4001, 8001)] == [
        6,
        6,
        4,
        4,
        3,
        2,
        1,
        1,
        1,
        1,
    ]
    model, (x, y) = tiny_model(), tiny_batch(4)
    with pytest.raises(ConfigError, match=r"^a patch of side 13 does not fit a 12×12 image$"):
        PatchRS(eps=13)(model, x, y)
    for bad in ({"queries": 0}, {"alpha_init": 0}, {"location_every": 1}):
        with pytest.raises(ConfigError, match="patch-rs needs"):
            PatchRS(**bad)
    with pytest.raises(ConfigError, match="PatchRS attacks patch, not 'l0'"):
        PatchRS(eps=4, norm="l0")
    with pytest.raises(ConfigError, match="unexpected keyword argument 'bpda'"):
        ATTACKS.build("patch-rs", eps=4, bpda=True)
    assert ATTACKS.get("patch-rs") is PatchRS and ATTACKS.default("patch-rs", "norm") == "patch"
