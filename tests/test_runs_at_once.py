"""APGD-T's and FAB-T's targets run as one batch decide every sample as the targets run in turn would."""

import pytest
import torch
from torch import nn

from attacks import APGD, FAB
from robustkit.per_sample_random import SampleRandom


class SkewedMLP(nn.Module):
    """A 10-class MLP on 8×8 images whose classes' weights differ in scale, so the highest-scoring wrong class
    is often not the easiest to reach: later targets break samples the first left unbroken."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.hidden, self.out = nn.Linear(64, 32), nn.Linear(32, 10)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.randn(32, 64, generator=g) / 8)
            weight = torch.randn(10, 32, generator=g)
            self.out.weight.copy_(weight * torch.logspace(-0.5, 0.5, 10)[torch.randperm(10, generator=g), None])
            self.hidden.bias.zero_(), self.out.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x.flatten(1) - 0.5)))


def model_and_images(n: int = 60):
    model = SkewedMLP(2).eval()
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model(x).argmax(1)  # every sample starts correctly classified
    return model, x, y


def ranked_targets(model, x, y):
    with torch.no_grad():
        return model(x).scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)


def apgd_targets_in_turn(attack: APGD, model, x, y):
    """The official cascade by hand: target k runs only on the samples targets 0…k−1 left unbroken, from the
    sample's k-th random draw; a sample keeps the first target's example. Returns it, the fooled mask and the
    deciding target (−1: robust)."""
    rng, ranked = SampleRandom(attack.seed, torch.arange(len(x))), ranked_targets(model, x, y)
    best, fooled, by = x.clone(), torch.zeros(len(x), dtype=torch.bool), torch.full((len(x),), -1)
    for k in range(attack.targets):
        start = attack.threat.random_point(x, rng)
        todo = (~fooled).nonzero().squeeze(1)
        adv, _, hit, _ = attack._descend(
            model, x[todo], y[todo], ranked[todo, k], None, None, attack.threat, attack.steps, start[todo]
        )
        best[todo[hit]], fooled[todo[hit]], by[todo[hit]] = adv[hit], True, k
    return best, fooled, by


def fab_targets_in_turn(attack: FAB, model, x, y):
    """FAB-T by hand: target k searches only the samples without an example within ε yet."""
    ranked = ranked_targets(model, x, y)
    best, found, by = x.clone(), torch.zeros(len(x), dtype=torch.bool), torch.full((len(x),), -1)
    for k in range(attack.targets):
        todo = (~found).nonzero().squeeze(1)
        adv, size, _ = attack._search(model, x[todo], y[todo], ranked[todo, k], None, x[todo])
        hit = size <= attack.eps
        best[todo[hit]], found[todo[hit]], by[todo[hit]] = adv[hit], True, k
    return best, found, by


@pytest.mark.parametrize(
    "attack, in_turn",
    [
        (APGD(eps=0.04, loss="dlr", targets=9, steps=20), apgd_targets_in_turn),
        (FAB(eps=0.04, targets=9, steps=20), fab_targets_in_turn),
    ],
)
def test_targets_at_once_decide_each_sample_as_in_turn(attack, in_turn):
    model, x, y = model_and_images()
    result = attack(model, x, y)
    best, fooled, by = in_turn(attack, model, x, y)
    assert (by > 0).sum() >= 3 and (~fooled).sum() >= 3  # later targets decide some samples, some stay robust
    assert torch.equal(result.success, fooled)
    # the first breaking target's example; FAB's float32 projections round with the batch's size
    assert torch.allclose(result.x_adv[fooled], best[fooled], atol=1e-6, rtol=0)


def test_a_robust_sample_pays_every_targets_budget_and_none_pays_more():
    """Passes per sample: 9 targets × (20 steps + the start) on a sample no target breaks, fewer on the others."""
    model, x, y = model_and_images()
    attack = APGD(eps=0.04, loss="dlr", targets=9, steps=20)
    result = attack(model, x, y)
    assert int(result.queries[result.success].max()) < 9 * 21
    _, _, by = apgd_targets_in_turn(attack, model, x, y)
    robust = by < 0
    assert torch.equal(result.queries[robust], torch.full((int(robust.sum()),), 9 * 21))
