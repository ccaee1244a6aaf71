"""Defaults that finish and say so: stated costs, one default norm, the one-pixel budget and its help text."""

import inspect
import json

import pytest
import torch
from attack_fixtures import tiny_batch
from click.testing import CliRunner
from torch import nn

from attacks import OnePixel
from robustkit.cli import main
from robustkit.cli.evaluate import evaluate
from robustkit.registry import ATTACKS


def test_deepfool_runs_the_norm_it_lists(tmp_path):
    """One source: the dataclass default is what Python runs, what ``list`` shows and what the CLI runs."""
    runner = CliRunner()
    listed = runner.invoke(main, ["list", "attacks", "deepfool"]).output
    assert "norm='l2'" in listed and ATTACKS.build("deepfool", eps=1.0).norm == "l2"
    checkpoint, out = tmp_path / "tiny.safetensors", tmp_path / "r.json"
    trained = runner.invoke(
        main, ["train", "--model", "lenet5", "--dataset", "synthetic", "--epochs", "1", "--out", str(checkpoint)]
    )
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(
        main,
        [
            "evaluate",
            "--model",
            "lenet5",
            "--dataset",
            "synthetic",
            "--checkpoint",
            str(checkpoint),
            "--attack",
            "deepfool",
            "--n-samples",
            "8",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())[0]["norm"] == "l2"


class Constant(nn.Module):
    """Always class 0, whatever the pixels: no candidate ever fools it, so the whole budget is spent."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([1.0, 0.0]))

    def forward(self, x):
        return self.bias.expand(len(x), 2)


def test_one_pixel_defaults_cost_1100_queries_per_image_and_the_paper_is_a_named_choice():
    x, _ = tiny_batch(3)
    result = OnePixel()(Constant(), x, torch.zeros(3, dtype=torch.long))
    assert result.queries.tolist() == [100 * (10 + 1)] * 3  # the paper's 400 × (100 + 1) = 40 400 each
    paper = OnePixel.paper(eps=3)
    assert (paper.eps, paper.population, paper.generations, paper.precision) == (3, 400, 100, "fp32")
    assert OnePixel.paper(generations=5).generations == 5
    helps = {p.name: p.help for p in evaluate.params}
    assert helps["population"].endswith(f"[{OnePixel.population}; the paper's {paper.population}].")
    assert helps["generations"].endswith(f"[{OnePixel.generations}; the paper's {paper.generations}].")


@pytest.mark.parametrize("name", ATTACKS.list())
def test_every_attack_states_what_its_defaults_cost(name):
    doc = " ".join(inspect.getdoc(ATTACKS.get(name)).split())
    assert "Cost of the defaults:" in doc and "s for 1000 Fashion-MNIST images" in doc
