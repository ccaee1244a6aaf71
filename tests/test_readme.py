"""README's ``evaluate_model`` examples, run as written (issue 23), on small stand-in data in their places."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import robustkit
from test_data import write_idx_pair

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(calling: str) -> list[str]:
    """README's ```python blocks that call ``calling``."""
    return [block for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL) if calling in block]


class SizeNoting(nn.Module):
    """Any nn.Module classifier: pooled to 4×4, then linear; it notes the image sizes it is shown."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.pool, self.linear, self.sizes = nn.AdaptiveAvgPool2d(4), nn.Linear(48, classes), set()

    def forward(self, x):
        self.sizes.add(tuple(x.shape[-2:]))
        return self.linear(self.pool(x).flatten(1))


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    """Fashion-MNIST as a few IDX images where ROBUSTKIT_DATA points, and ./pets, an image folder of two classes."""
    draw = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (56, 28, 28), generator=draw, dtype=torch.uint8)
    labels = torch.randint(0, 10, (56,), generator=draw, dtype=torch.uint8)
    write_idx_pair(tmp_path / "data" / "fashion-mnist", "train", images[:40], labels[:40])
    write_idx_pair(tmp_path / "data" / "fashion-mnist", "t10k", images[40:], labels[40:])
    monkeypatch.setenv("ROBUSTKIT_DATA", str(tmp_path / "data"))
    rng = np.random.default_rng(0)
    for kind in ("cat", "dog"):
        (tmp_path / "pets" / kind).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "pets" / kind / f"{i}.png")
    monkeypatch.chdir(tmp_path)


def test_the_evaluate_model_examples_run_as_written(stand_ins, monkeypatch):
    (block,) = python_blocks("evaluate_model(")
    real, calls = robustkit.evaluate_model, []

    def noted(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(robustkit, "evaluate_model", noted)
    my_module = SizeNoting(classes=2)
    exec(compile(block, str(README), "exec"), {"my_module": my_module})
    named, module = calls
    assert named.record["model"] == "smallcnn" and named.record["settings"]["steps"] == 20
    assert named.record["n"] == 16  # n_samples=1000 of a 16-image test split: all of it
    assert module.record["settings"]["restarts"] == 2 and module.record["dataset"] == "imagefolder"
    assert module.record["n"] == 4  # the 20 % of 20 images the folder's seeded split tests on
    assert my_module.sizes == {(32, 32)}  # image_size=32 reached the data set, not its default 64
