"""Defaults that finish and say so: stated costs, one default norm, the one-pixel budget and its help text."""

import inspect
import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from attack_fixtures import tiny_batch
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
    trained = runner.invoke(main, ["train", "--model", "lenet5", "--dataset", "synthetic", "--epochs", "1",
                                   "--out", str(checkpoint)])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(main, ["evaluate", "--model", "lenet5", "--dataset", "synthetic", "--checkpoint", str(checkpoint),
                                  "--attack", "deepfool", "--n-samples", "8", "--output", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())[0]["norm"] == "l2"
