"""The example grid's captions say what the middle column shows."""

import pytest
import torch
from PIL import ImageDraw

from robustkit.results.example_grid import save_example_grid


@pytest.mark.parametrize(
    "norm, changes, caption",
    [
        ("l0", {(0, 0): 1.0}, "delta: 1 pixel"),  # a full-range change: amplification 0.5
        ("l0", {(0, 0): 1.0, (3, 5): 0.7}, "delta: 2 pixels"),
        ("linf", {(0, 0): 0.1, (3, 5): -0.1}, "delta x5"),
        ("l2", {(0, 0): 0.8}, "delta x0.625"),
    ],
)
def test_the_perturbation_caption_counts_l0_pixels_and_states_the_amplification_otherwise(
    tmp_path, monkeypatch, norm, changes, caption
):
    captions = []
    monkeypatch.setattr(ImageDraw.ImageDraw, "text", lambda self, xy, text, **kw: captions.append(text))
    clean = torch.full((1, 3, 8, 8), 0.0 if norm == "l0" else 0.5)
    adversarial = clean.clone()
    for (row, col), change in changes.items():
        adversarial[0, :, row, col] += change
    save_example_grid(
        tmp_path / "grid.png", clean, adversarial, torch.tensor([0]), torch.tensor([1]), ["a", "b"], norm=norm
    )
    assert captions == ["clean: a", caption, "adv: b"]
