"""A suite's ``corruptions:``: validated, run into the store once (resumed, never redone), and shown on the
leaderboard (mean with its bootstrap interval, mCE against the undefended entry of the same model) with
the per-corruption table folded on the HTML page, beside attack cells whose keys it leaves alone."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from robustkit.corruptions.report import CorruptionReport
from robustkit.errors import ConfigError
from robustkit.evaluation.runner import run_suite
from robustkit.results import corruption_board
from robustkit.results.leaderboard import leaderboard, publish, render
from robustkit.results.store import ResultStore
from robustkit.suites.spec import load_suite

SUITE = {
    "name": "tinyc",
    "dataset": "synthetic",
    "n_samples": 24,
    "batch_size": 24,
    "checks": False,
    "models": [{"model": "lenet5", "train": {"epochs": 1, "batch_size": 32, "precision": "fp32"}}],
    "attacks": [{"attack": "fgsm", "norm": "linf", "eps": [0.1]}],
    "corruptions": {"names": ["stripe", "brightness"], "severities": [1, 5]},
}


def _write(folder, suite):
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "value,message",
    [
        ({"severities": [0]}, "steps 1 to 5"),
        ({"severities": "most"}, "benchmark, all"),
        ({"colour": 1}, "unknown key 'colour'"),
        ({"folder": "nowhere"}, "no labels.npy"),
    ],
)
def test_a_bad_corruptions_key_is_one_line(tmp_path, value, message):
    with pytest.raises(ConfigError, match=message):
        load_suite(_write(tmp_path, {**SUITE, "corruptions": value}))


def test_suite_runs_corruptions_into_the_store_and_onto_the_board(tmp_path):
    plain = load_suite(_write(tmp_path, {k: v for k, v in SUITE.items() if k != "corruptions"}))
    suite = load_suite(_write(tmp_path, SUITE))
    assert suite.corruptions.severities == (1, 5) and plain.cells()[0].key("x") == suite.cells()[0].key("x")
    store = tmp_path / "s.sqlite"
    first = run_suite(suite, store, device=torch.device("cpu"), progress=False)
    again = run_suite(suite, store, device=torch.device("cpu"), progress=False)
    assert first.evaluated == 1 and again.evaluated == 0 and again.keys == first.keys
    with ResultStore(store) as s:
        cells, runs = s.frame(), s.frame("corruptions")
    assert len(runs) == 1 and runs["key"].iloc[0] in first.keys
    report = CorruptionReport.from_dict(json.loads(runs["details"].iloc[0]))
    assert report.names == ["stripe", "brightness", "brightness"] and report.severities == [1, 1, 5] and report.n == 24
    assert report.clean_accuracy == pytest.approx(cells["clean_accuracy"].iloc[0])
    table = leaderboard(cells, corruptions=runs)
    assert table["mean_corruption_accuracy"].iloc[0] == pytest.approx(report.mean_accuracy)
    interval = report.mean_interval()
    assert (
        table["mean_corruption_accuracy_low"].iloc[0],
        table["mean_corruption_accuracy_high"].iloc[0],
    ) == pytest.approx((interval.low, interval.high), abs=1e-6)
    assert "corruptions mean" in render(table, "md") and "common corruptions" in render(table, "html")
    written = publish(cells, tmp_path / "board", "tinyc", corruptions=runs)
    page = (tmp_path / "board" / "tinyc.html").read_text()
    assert "<details><summary>Common corruptions" in page and "tinyc.corruptions" not in page and "<svg" in page
    assert any(p.name == "tinyc.corruptions.svg" for p in written)


def _run(entry: str, model: str, defense: str, correct: list[list[bool]], created: str) -> dict:
    bits = np.array(correct, dtype=bool)
    report = CorruptionReport(["a", "a", "b"], [1, 2, 1], bits, np.ones(bits.shape[1], dtype=bool), np.ones(3), "t")
    return {
        "entry": entry,
        "model": model,
        "defense": defense,
        "created": created,
        "details": json.dumps(report.to_dict()),
    }


def test_mce_is_against_the_undefended_entry_of_the_same_architecture():
    runs = pd.DataFrame(
        [
            _run("lenet5", "lenet5", "none", [[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0]], "1"),
            _run("lenet5+madry", "lenet5", "madry", [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], "1"),
            _run("smallcnn+madry", "smallcnn", "madry", [[1, 1, 1, 1]] * 3, "1"),
        ]
    )
    columns, _ = corruption_board.corruption_columns(["lenet5", "lenet5+madry", "smallcnn+madry"], runs)
    assert columns.loc["lenet5", "mCE"] == pytest.approx(1.0)
    assert columns.loc["lenet5+madry", "mCE"] == pytest.approx((5 / 7 + 1 / 2) / 2)  # errors a 5 of 7, b 1 of 2
    assert np.isnan(columns.loc["smallcnn+madry", "mCE"])  # no undefended smallcnn on the board
    assert columns.loc["lenet5+madry", "mean_corruption_accuracy"] == pytest.approx(6 / 12)
    table = corruption_board.per_corruption_table(runs, ["lenet5", "lenet5+madry"])
    assert list(table.columns) == ["corruption", "severity", "lenet5", "lenet5+madry"] and len(table) == 3


def test_benchmark_command_shows_certified_and_corruption_groups_on_one_board(tmp_path):
    """Both groups of one suite reach the board the ``benchmark`` command prints and publishes."""
    from click.testing import CliRunner

    from robustkit.cli import main

    both = {
        **SUITE,
        "models": [
            {
                **SUITE["models"][0],
                "certify": {"sigma": 0.25, "n": 40, "n0": 10, "n_samples": 4, "radii": [0, 0.1], "attack": False},
            }
        ],
    }
    path = _write(tmp_path, both)
    result = CliRunner().invoke(
        main,
        [
            "benchmark",
            str(path),
            "--store",
            str(tmp_path / "s.sqlite"),
            "--out",
            str(tmp_path / "board"),
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "| certified ε=0.1 |" in result.output and "corruptions mean" in result.output
    page = (tmp_path / "board" / "tinyc.html").read_text()
    assert "Certified accuracy vs L2 radius" in page and "<details><summary>Common corruptions" in page
