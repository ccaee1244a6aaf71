"""Transfer attacks (crafted on one model, scored on another) and the suite's transfer matrix and checks."""

import json

import pandas as pd
import pytest
import torch
import yaml
from attack_fixtures import DATA, tiny_model
from click.testing import CliRunner

from attacks import PGD
from robustkit.cli import main
from robustkit.data.base import Split
from robustkit.evaluation.engine import evaluate_attack
from robustkit.evaluation.runner import run_suite
from robustkit.results.leaderboard import leaderboard, publish, transfer_matrix
from robustkit.results.store import read_stores
from robustkit.suites.spec import load_suite

X, Y = DATA.test.images, DATA.test.labels


def other_model():
    """A different network of the same task: the tiny model with its weights jittered."""
    model = tiny_model()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * p.std() * torch.randn(p.shape, generator=generator))
    return model


def test_transfer_from_the_model_itself_is_the_white_box_result():
    model, attack = tiny_model(), PGD(eps=0.1, steps=5)
    white = evaluate_attack(model, Split(X, Y), attack, progress=False)
    moved = evaluate_attack(model, Split(X, Y), attack, progress=False, source=tiny_model())
    assert torch.equal(white.robust, moved.robust) and torch.equal(white.clean_correct, moved.clean_correct)


def test_transfer_is_crafted_on_the_source_and_scored_on_the_target():
    target, source, attack = tiny_model(), other_model(), PGD(eps=0.1, steps=5, early_stop=False)
    moved = evaluate_attack(target, Split(X, Y), attack, progress=False, source=source)
    # stopping at the source's decision boundary transfers badly: transfer always spends the full budget
    default = evaluate_attack(target, Split(X, Y), PGD(eps=0.1, steps=5), progress=False, source=source)
    assert torch.equal(default.robust, moved.robust)
    # by hand: clean-correct on the target, then the source's adversarial example must fool the target
    correct = target(X).argmax(1) == Y
    x_adv = attack(source, X[correct], Y[correct], index=correct.nonzero().squeeze(1)).x_adv  # same per-sample draws
    fooled = torch.zeros_like(correct)
    fooled[correct.nonzero().squeeze(1)] = target(x_adv).argmax(1) != Y[correct]
    assert torch.equal(moved.robust, correct & ~fooled)
    white = evaluate_attack(target, Split(X, Y), attack, progress=False)
    assert white.robust_accuracy <= moved.robust_accuracy  # a surrogate is no better than the model itself


SUITE = {
    "name": "transfer",
    "dataset": "synthetic",
    "n_samples": 32,
    "seed": 0,
    "batch_size": 32,
    "check_samples": 24,
    "models": [
        {"model": "lenet5", "train": {"epochs": 4, "batch_size": 32, "lr": 0.05, "precision": "fp32"}},
        {"model": "smallcnn", "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "precision": "fp32"}},
    ],
    "attacks": [{"attack": "pgd", "norm": "linf", "eps": 0.1, "settings": {"steps": 4}}],
    "transfer": [{"attack": "pgd", "norm": "linf", "eps": 0.1, "settings": {"steps": 4}}],
}


@pytest.fixture(scope="module")
def transferred(tmp_path_factory):
    folder = tmp_path_factory.mktemp("transfer")
    (folder / "suite.yaml").write_text(yaml.safe_dump(SUITE))
    suite = load_suite(folder / "suite.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROBUSTKIT_HOME", str(folder / "home"))
        summary = run_suite(suite, folder / "r.sqlite", device=torch.device("cpu"), progress=False)
        again = run_suite(suite, folder / "r.sqlite", device=torch.device("cpu"), progress=False)
    return folder, summary, again


def test_suite_transfer_matrix_diagonal_equals_the_white_box_results(transferred):
    folder, summary, again = transferred
    assert summary.evaluated == 2 + 4 and again.evaluated == 0 and again.skipped == 6
    cells = read_stores([folder / "r.sqlite"])
    ((title, matrix),) = transfer_matrix(cells).items()
    assert title == "pgd linf ε=0.1" and matrix.shape == (2, 2)
    board = leaderboard(cells).set_index("entry")
    assert len(board) == 2  # transfer cells are not leaderboard rows
    for entry in ("lenet5", "smallcnn"):
        assert matrix.loc[entry, entry] == pytest.approx(board.loc[entry, "pgd linf ε=0.1"])
        assert matrix[entry].min() == pytest.approx(matrix.loc[entry, entry])  # white box is the strongest here


def test_suite_checks_are_stored_and_shown(transferred, tmp_path):
    folder, _, _ = transferred
    cells, checks = read_stores([folder / "r.sqlite"]), read_stores([folder / "r.sqlite"], "checks")
    assert sorted(checks["entry"]) == ["lenet5", "smallcnn"] and set(checks["n"]) == {24}
    board = leaderboard(cells, checks).set_index("entry")
    for row in checks.itertuples():
        expected = "ok" if row.summary == "ok" else f"{row.summary} (linf ε=0.1)"
        assert board.loc[row.entry, "checks"] == expected
    stale = checks.iloc[:1].assign(
        checkpoint_sha256="older file", weights_sha256="older weights", summary="zero-gradients", key="x"
    )
    again = leaderboard(cells, pd.concat([checks, stale])).set_index("entry")
    assert again["checks"].equals(board["checks"])  # checks of other weights are not shown
    written = {p.name for p in publish(cells, tmp_path, "transfer", checks=checks)}
    assert {"transfer.transfer.md", "transfer.transfer.csv", "transfer.html"} <= written
    assert "crafted on" in (tmp_path / "transfer.html").read_text()


def test_evaluate_cli_transfer_and_checks(tmp_path):
    runner = CliRunner()
    target, source = tmp_path / "lenet.safetensors", tmp_path / "cnn.safetensors"
    for model, out, epochs in (("lenet5", target, "3"), ("smallcnn", source, "1")):
        trained = runner.invoke(
            main,
            [
                "train",
                "--model",
                model,
                "--dataset",
                "synthetic",
                "--epochs",
                epochs,
                "--batch-size",
                "32",
                "--lr",
                "0.05",
                "--out",
                str(out),
            ],
        )
        assert trained.exit_code == 0, trained.output
    out = tmp_path / "r.json"
    base = [
        "evaluate",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(target),
        "--n-samples",
        "24",
        "--steps",
        "3",
        "--output",
        str(out),
    ]
    result = runner.invoke(
        main,
        [*base, "--source-model", "smallcnn", "--source-checkpoint", str(source), "--checks", "--check-samples", "16"],
    )
    assert result.exit_code == 0, result.output
    assert "transfer: examples crafted on smallcnn" in result.output and "checks: no flags (full set)" in result.output
    assert runner.invoke(main, base).exit_code == 0
    moved, direct = json.loads(out.read_text())
    assert moved["source"] == "smallcnn" and moved["source_checkpoint_sha256"] != moved["checkpoint_sha256"]
    checked = json.loads(moved["extra"])
    assert checked["checks"] == "ok"  # a normally trained model: no flag
    assert checked["check_details"]["summary"] == checked["checks"]
    assert moved["robust_accuracy"] >= direct["robust_accuracy"]  # the white box is at least as strong


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--checks", "--norm", "l0", "--attack", "one-pixel"], "--checks test gradient attacks"),
        (["--source-model", "lenet55"], "did you mean lenet5"),
        (["--source-defense", "madry"], "--source-defense needs --source-model"),
        (["--attack", "pgd", "--norm", "l0"], "PGD attacks linf, l2, l1, not 'l0'"),
    ],
)
def test_evaluate_cli_errors_come_before_any_work(extra, message):
    result = CliRunner().invoke(main, ["evaluate", "--model", "lenet5", "--dataset", "synthetic", *extra])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
