"""One-pixel attack: the L0 budget is exact, selection never worsens, and a pixel-sensitive model is fooled."""

import pytest
import torch
from attack_fixtures import tiny_batch, tiny_model
from torch import nn

from attacks import OnePixel
from robustkit.errors import ConfigError
from robustkit.threats import threat_model

SMALL = dict(population=24, generations=6)


class CornerModel(nn.Module):
    """Class 1 exactly when the top-left pixel is bright: one pixel can fool it, and only that one."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        bright = x[:, :, 0, 0].mean(1) - 0.5
        return torch.stack([-bright, bright], dim=1) * self.scale


def test_a_model_one_pixel_can_fool_is_fooled_at_that_pixel():
    x, y = torch.zeros(6, 3, 8, 8), torch.zeros(6, dtype=torch.long)
    result = OnePixel(eps=1, population=64, generations=40)(CornerModel(), x, y)
    assert result.success.all()
    assert (result.extras["pixels"] == 0).all()  # found the one pixel that matters
    assert (result.x_adv[:, :, 0, 0].mean(1) > 0.5).all()


@pytest.mark.parametrize("pixels", [1, 3])
def test_at_most_k_pixels_change_and_values_stay_in_range(pixels):
    model, (x, y) = tiny_model(), tiny_batch(8)
    result = OnePixel(eps=pixels, **SMALL)(model, x, y)
    changed = ((result.x_adv - x).abs().amax(1) > 0).flatten(1).sum(1)
    assert (changed <= pixels).all() and (result.norms == changed.float()).all()
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert result.extras["pixels"].shape == (8, pixels, 2)
    assert threat_model("l0", pixels).contains(x, result.x_adv).all()


def test_best_fitness_never_worsens_and_fooled_images_stop_costing_queries():
    model, (x, y) = tiny_model(), tiny_batch(16)
    result = OnePixel(eps=3, population=24, generations=10)(model, x, y)
    history = result.extras["best_fitness"]
    assert history.shape == (11, 16) and (history[1:] <= history[:-1] + 1e-7).all()
    full = 24 * 11
    assert (result.queries[~result.success] == full).all()
    if result.success.any():
        assert result.queries[result.success].min() < full


def test_targeted_pushes_toward_the_target():
    x, y = torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)
    result = OnePixel(eps=1, population=64, generations=40)(CornerModel(), x, y, target=torch.ones(4, dtype=torch.long))
    assert result.success.all() and (CornerModel()(result.x_adv).argmax(1) == 1).all()


def test_same_seed_same_result_and_bad_settings():
    model, (x, y) = tiny_model(), tiny_batch(4)
    a, b = OnePixel(seed=3, **SMALL)(model, x, y), OnePixel(seed=3, **SMALL)(model, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    with pytest.raises(ConfigError, match="OnePixel attacks l0, not 'linf'"):
        OnePixel(norm="linf")
    with pytest.raises(ConfigError, match="whole number"):
        OnePixel(eps=1.5)
    with pytest.raises(ConfigError, match="population"):
        OnePixel(population=2)
