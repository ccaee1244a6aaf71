"""One evaluation path: ``evaluate_model`` from Python, the CLI and the runner give one record schema and the same figures."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

import robustkit
from robustkit.cli import main
from robustkit.errors import ConfigError
from robustkit.evaluation.runner import run_suite
from robustkit.results.records import COLUMNS
from robustkit.results.store import read_stores
from robustkit.suites.spec import load_suite
from robustkit.weights.checkpoint import load_model

EVAL = ["evaluate", "--model", "lenet5", "--dataset", "synthetic", "--n-samples", "16"]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A lenet5 trained briefly on the synthetic set, once per module; the tests only read it."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    trained = run(
        "train",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--precision",
        "fp32",
        "--out",
        str(path),
    )
    assert trained.exit_code == 0, trained.output
    return path


def test_a_module_from_python_scores_as_the_cli_does(tiny, tmp_path):
    model, _ = load_model(tiny)
    model.train()  # left in training mode: evaluated in eval mode, its mode given back
    report = robustkit.evaluate_model(
        model, "synthetic", "pgd", eps=0.1, attack_settings={"steps": 3}, n_samples=16, progress=False
    )
    assert model.training and all(m.training for m in model.modules())
    out = tmp_path / "r.json"
    cli = run(*EVAL, "--checkpoint", str(tiny), "--eps", "0.1", "--steps", "3", "--output", str(out))
    assert cli.exit_code == 0, cli.output
    row = json.loads(out.read_text())[0]
    assert report.robust_accuracy == row["robust_accuracy"] and report.clean_accuracy == row["clean_accuracy"]
    assert report.record["weights"].startswith("in-memory module lenet5") and report.record["checkpoint"] is None
    assert report.record["model"] == row["model"] == "lenet5"  # the name it was built under, not "Sequential"
    assert set(report.record) == set(COLUMNS) and report.record["n"] == 16 and report.examples
    assert len(report.outcome.robust) == 16  # per-sample outcomes kept


def test_the_cli_record_is_the_runners_store_row(tiny, tmp_path):
    suite = {
        "name": "same",
        "dataset": "synthetic",
        "n_samples": 16,
        "seed": 0,
        "checks": False,
        "models": [{"model": "lenet5", "checkpoint": str(tiny)}],
        "attacks": [{"attack": "fgsm", "norm": "linf", "eps": 0.1}],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    run_suite(load_suite(tmp_path / "s.yaml"), tmp_path / "suite.sqlite", device=torch.device("cpu"), progress=False)
    cli = run(
        *EVAL,
        "--checkpoint",
        str(tiny),
        "--attack",
        "fgsm",
        "--eps",
        "0.1",
        "--output",
        str(tmp_path / "cli.sqlite"),
        "--output",
        str(tmp_path / "cli.csv"),
    )
    assert cli.exit_code == 0, cli.output
    ours, theirs = read_stores([tmp_path / "cli.sqlite"]).iloc[0], read_stores([tmp_path / "suite.sqlite"]).iloc[0]
    assert list(ours.index) == list(theirs.index) == COLUMNS
    same = [
        "key",
        "dataset",
        "entry",
        "model",
        "defense",
        "checkpoint",
        "checkpoint_sha256",
        "attack",
        "norm",
        "eps",
        "settings",
        "n_samples",
        "sample_seed",
        "n",
        "clean_accuracy",
        "robust_accuracy",
        "attack_success_rate",
        "n_unverified",
        "clean_correct",
        "robust",
        "examples",
        "weights",
        "training",
    ]
    assert ours[same].to_dict() == theirs[same].to_dict()
    text = pd.read_csv(tmp_path / "cli.csv")
    assert text.columns.tolist() == COLUMNS and text["key"].iloc[0] == theirs["key"]


def test_every_kind_of_run_appends_to_one_file_and_a_store_feeds_the_leaderboard(tiny, tmp_path):
    csv, store = tmp_path / "runs.csv", tmp_path / "runs.sqlite"
    base = [*EVAL, "--checkpoint", str(tiny), "--output", str(csv), "--output", str(store)]
    for extra in (
        ["--attack", "universal", "--fit-samples", "32", "-o", "max_passes=1", "--eps", "0.2"],
        ["--steps", "3", "--source-checkpoint", str(tiny)],
        ["--steps", "3", "--checks", "--check-samples", "8"],
        ["--attack", "fooling", "--steps", "5"],
    ):
        result = run(*base, *extra)
        assert result.exit_code == 0 and result.output.count("record appended to") == 2, result.output
    rows = pd.read_csv(csv)
    assert rows.columns.tolist() == COLUMNS and rows["attack"].tolist() == ["universal", "pgd", "pgd", "fooling"]
    assert rows["source"].tolist()[1] == "lenet5" and json.loads(rows["extra"].iloc[2])["checks"] == "ok"
    board = run("leaderboard", str(store))
    assert board.exit_code == 0, board.output
    assert (
        "lenet5" in board.output
        and "| linf ε=0.1 |" in board.output
        and "Worst case per threat model" in board.output
        and "checks" in board.output
    )


@pytest.mark.parametrize(
    "content, name",
    [
        ("a,b\n1,2\n", "old.csv"),
        ('[{"model": "x", "attack_settings": "{}"}]', "old.json"),
        ("not a database, just text", "old.sqlite"),
    ],
)
def test_a_foreign_output_is_refused_before_any_work(tiny, tmp_path, monkeypatch, content, name):
    def never(*args, **kwargs):
        raise AssertionError("the evaluation ran")

    monkeypatch.setattr("robustkit.evaluation.api.evaluate_model", never)  # the command imports it when it runs
    (tmp_path / name).write_text(content)
    result = run(
        *EVAL, "--checkpoint", str(tiny), "--output", str(tmp_path / "fine.csv"), "--output", str(tmp_path / name)
    )
    assert result.exit_code == 1 and result.output.startswith("Error:") and result.output.count("\n") == 1, (
        result.output
    )
    assert name in result.output and not (tmp_path / "fine.csv").exists()


class AlwaysWrong(torch.nn.Module):
    """Five logits, the last (a class the 4-class data never holds) always highest: clean accuracy 0."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor([0.1, 0.1, 0.1, 0.1, 0.2]))

    def forward(self, x):
        return 1 + x.flatten(1).mean(1, keepdim=True) * self.scale


def test_figures_of_a_run_that_attacked_nothing_print_a_dash_and_are_stored_as_null(monkeypatch, tmp_path):
    import robustkit.evaluation.api  # the CLI imports evaluate_model from here when the command runs

    real = robustkit.evaluation.api.evaluate_model
    monkeypatch.setattr(robustkit.evaluation.api, "evaluate_model", lambda model, *a, **k: real(AlwaysWrong(), *a, **k))
    out = tmp_path / "r.json"
    result = run(*EVAL, "--attack", "fgsm", "--eps", "0.1", "--output", str(out))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    row = re.split(
        r"\s{2,}", lines[next(i for i, line in enumerate(lines) if line.split()[:2] == ["model", "attack"]) + 1]
    )
    none_of_16 = (
        f"0.0000 [0.0000, {1 - 0.025 ** (1 / 16):.4f}]"  # Clopper–Pearson's upper end for 0 of n: 1 − (α/2)^(1/n)
    )
    assert row[5:9] == [none_of_16, none_of_16, "—", "—"]  # clean acc, robust acc, success (none attacked), median norm
    assert not re.search(r"\bnan\b", result.output, re.IGNORECASE)
    record = json.loads(out.read_text())[0]
    assert record["clean_accuracy"] == 0 and record["attack_success_rate"] is None and record["median_norm"] is None
    assert record["attack_success_rate_low"] is None and record["attack_success_rate_high"] is None
    assert json.loads(record["extra"])["mean_norm"] is None
    report = robustkit.evaluate_model(
        AlwaysWrong(), "synthetic", "fgsm", eps=0.1, n_samples=16, checks="none", progress=False
    )
    assert report.record["attack_success_rate"] is None and report.record["median_norm"] is None  # the row as stored


def test_attack_settings_and_data_set_options_are_keywords_as_on_the_cli(tiny):
    from robustkit.data import get_dataset

    model, _ = load_model(tiny)
    common = dict(eps=0.1, n_samples=16, checks="none", progress=False)
    keywords = robustkit.evaluate_model(model, "synthetic", "pgd", steps=3, noise=0.3, **common)
    dicts = robustkit.evaluate_model(
        model, "synthetic", "pgd", attack_settings={"steps": 3}, dataset_options={"noise": 0.3}, **common
    )
    built = robustkit.evaluate_model(
        model, get_dataset("synthetic", noise=0.3), "pgd", attack_settings={"steps": 3}, **common
    )
    assert keywords.record["key"] == dicts.record["key"] and keywords.record["settings"]["steps"] == 3
    for other in (dicts, built):  # the same images (noise 0.3, not the default 0.2) and the same attack
        assert torch.equal(keywords.outcome.clean_correct, other.outcome.clean_correct)
        assert torch.equal(keywords.outcome.robust, other.outcome.robust)
    plain = robustkit.evaluate_model(model, "synthetic", "pgd", steps=3, **common)
    assert plain.record["key"] != keywords.record["key"]  # the option changed what was evaluated


@pytest.mark.parametrize(
    "keywords, message",
    [
        (
            {"stepz": 3},
            r"^evaluate_model: 'stepz' is not an argument, a setting of pgd or an option of synthetic "
            r"\(did you mean steps\?\); pgd's settings: bpda, early_stop, eot, loss, precision, random_start, "
            r"restarts, step_size, steps; synthetic's options: channels, download, n_test, n_train, noise, "
            r"num_classes, size$",
        ),
        (
            {"steps": 3, "attack_settings": {"steps": 4}},
            r"^evaluate_model: 'steps' is given twice, as a keyword and in attack_settings$",
        ),
        ({"image_size": 32}, r"^synthetic is resident and 16×16: image_size applies to imagefolder and imagenet$"),
    ],
)
def test_a_keyword_neither_the_attack_nor_the_data_set_takes_is_one_line_naming_the_valid_ones(keywords, message):
    with pytest.raises(ConfigError, match=message):
        robustkit.evaluate_model(AlwaysWrong(), "synthetic", "pgd", progress=False, **keywords)


def test_data_set_options_do_not_apply_to_a_built_data_set():
    from robustkit.data import get_dataset

    with pytest.raises(ConfigError, match=r"^data-set options \(noise\) apply to a data set given by name"):
        robustkit.evaluate_model(AlwaysWrong(), get_dataset("synthetic"), "pgd", noise=0.3, progress=False)
