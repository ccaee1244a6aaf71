"""The figures of a corruption run (per-pair intervals, the bootstrap mean, CE and mCE against a baseline)
against hand computations; a precomputed CIFAR-10-C folder the test writes; the Python call and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from robustkit.cli import main
from robustkit.corruptions.evaluate import CorruptionOptions, evaluate_corruptions
from robustkit.corruptions.folder import evaluate_folder
from robustkit.corruptions.report import CorruptionReport
from robustkit.data import get_dataset
from robustkit.errors import ConfigError
from robustkit.evaluation.api import RunOptions
from robustkit.evaluation.corruption_run import evaluate_model_corruptions
from robustkit.models import get_model
from robustkit.results.intervals import bootstrap_mean_interval, proportion_interval
from robustkit.suites.spec import CorruptionEntry


def _report(correct: list[list[bool]], names=("a", "a", "b"), severities=(1, 2, 1)) -> CorruptionReport:
    bits = np.array(correct, dtype=bool)
    return CorruptionReport(
        list(names), list(severities), bits, np.ones(bits.shape[1], dtype=bool), np.ones(len(bits)), "test"
    )


def test_ce_and_mce_follow_hendrycks_and_dietterich():
    model = _report([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]])  # errors: a 2 + 3, b 1
    base = _report([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0]])  # errors: a 3 + 4, b 2
    assert model.corruption_errors(base) == {"a": pytest.approx(5 / 7), "b": pytest.approx(1 / 2)}
    assert model.mce(base) == pytest.approx((5 / 7 + 1 / 2) / 2)
    assert model.mean_accuracy == pytest.approx(6 / 12) and model.per_corruption() == {"a": 3 / 8, "b": 3 / 4}
    assert model.mean_interval() == bootstrap_mean_interval(model.correct.T.astype(float))
    row = model.table()[0]
    assert (row["accuracy"], row["accuracy_low"], row["accuracy_high"]) == (
        0.5,
        *proportion_interval(2, 4).__dict__.values(),
    )
    with pytest.raises(ConfigError, match="same corruptions"):
        model.mce(_report([[1, 0, 0, 0]], names=("a",), severities=(1,)))
    again = CorruptionReport.from_dict(json.loads(json.dumps(model.to_dict())))
    assert (
        np.array_equal(again.correct, model.correct)
        and again.names == model.names
        and np.array_equal(again.clean, model.clean)
    )


class Brightest(nn.Module):
    """Class = which of 4 image quarters is brightest: a rule the test can apply by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        quarters = [x[..., :h, :w], x[..., :h, w:], x[..., h:, :w], x[..., h:, w:]]
        return torch.stack([q.mean(dim=(1, 2, 3)) for q in quarters], 1) * self.scale


def test_accuracy_is_the_models_own_verdict_on_each_corrupted_image():
    from robustkit.corruptions.catalog import select
    from robustkit.corruptions.evaluate import corrupt

    x, y = torch.rand(12, 3, 32, 32), torch.randint(4, (12,))
    report = evaluate_corruptions(
        Brightest(), x, y, CorruptionOptions(names=("contrast", "fog"), progress=False, seed=5)
    )
    for k, (corruption, severity) in enumerate(select(3, ("contrast", "fog"))):
        by_hand = Brightest()(corrupt(x, corruption, severity, seed=5)).argmax(1) == y
        assert np.array_equal(report.correct[k], by_hand.numpy())
    assert np.array_equal(report.clean, (Brightest()(x).argmax(1) == y).numpy())


def test_a_cifar_c_folder_is_read_instead_of_generating(tmp_path):
    rng = np.random.default_rng(0)
    total = 10
    labels = rng.integers(0, 4, 5 * total).astype(np.uint8)
    for name in ("fog", "snow"):
        np.save(tmp_path / f"{name}.npy", rng.integers(0, 256, (5 * total, 32, 32, 3), dtype=np.uint8))
    np.save(tmp_path / "labels.npy", labels)
    report = evaluate_folder(Brightest(), tmp_path, n_samples=6, options=CorruptionOptions(progress=False, seed=1))
    chosen = torch.randperm(total, generator=torch.Generator().manual_seed(1))[:6].sort().values.numpy()
    assert report.names == ["fog"] * 5 + ["snow"] * 5 and report.severities == [1, 2, 3, 4, 5] * 2
    images = np.load(tmp_path / "snow.npy")
    for s in range(5):
        rows = s * total + chosen
        x = torch.from_numpy(images[rows]).permute(0, 3, 1, 2).float() / 255
        assert np.array_equal(report.correct[5 + s], (Brightest()(x).argmax(1).numpy() == labels[rows]))
    assert "frost" in report.unavailable


def test_python_call_and_cli_agree_and_mce_needs_a_named_model(tmp_path):
    data = get_dataset("synthetic")
    model = get_model("lenet5", data.info, seed=0)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    spec = CorruptionEntry(names=("stripe", "brightness"), severities="all")
    run = evaluate_model_corruptions(model, data, n_samples=24, corruptions=spec, run=RunOptions(progress=False))
    assert run.baseline is None and run.report.names == ["stripe"] + ["brightness"] * 5
    with pytest.raises(ConfigError, match="by name"):
        evaluate_model_corruptions(model, data, n_samples=8, corruptions=spec, baseline=True)
    out = tmp_path / "c.csv"
    store = tmp_path / "s.sqlite"
    result = CliRunner().invoke(
        main,
        [
            "corruptions",
            "--model",
            "lenet5",
            "--dataset",
            "synthetic",
            "--weights",
            str(tmp_path / "w.pt"),
            "--n-samples",
            "24",
            "--corruption",
            "stripe",
            "--corruption",
            "brightness",
            "--severities",
            "all",
            "--output",
            str(out),
            "--output",
            str(store),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "mean corruption accuracy" in result.output and "frost" not in result.output  # not one of MNIST-C's
    import pandas as pd

    from robustkit.results.store import ResultStore

    table = pd.read_csv(out)
    assert table["accuracy"].tolist() == pytest.approx([r["accuracy"] for r in run.report.table()])
    with ResultStore(store) as s:
        row = s.frame("corruptions").iloc[0]
    assert row["mean_corruption_accuracy"] == pytest.approx(run.report.mean_accuracy)
    bad = CliRunner().invoke(main, ["corruptions", "--model", "lenet5", "--severities", "7"])
    assert bad.exit_code != 0 and "Error: --severities" in bad.output and "Traceback" not in bad.output
