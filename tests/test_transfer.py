"""Transfer attacks (crafted on one model, scored on another) and the suite's transfer matrix and checks."""

import pytest
import torch
import yaml
from click.testing import CliRunner

from attack_fixtures import DATA, tiny_model
from attacks import PGD
from robustkit.cli import main
from robustkit.evaluate import evaluate_attack
from robustkit.leaderboard import leaderboard, publish, transfer_matrix
from robustkit.runner import run_suite
from robustkit.store import read_stores
from robustkit.suite import load_suite

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
    white = evaluate_attack(model, X, Y, attack, progress=False)
    moved = evaluate_attack(model, X, Y, attack, progress=False, source=tiny_model())
    assert torch.equal(white.robust, moved.robust) and torch.equal(white.clean_correct, moved.clean_correct)


def test_transfer_is_crafted_on_the_source_and_scored_on_the_target():
    target, source, attack = tiny_model(), other_model(), PGD(eps=0.1, steps=5)
    moved = evaluate_attack(target, X, Y, attack, progress=False, source=source)
    # by hand: clean-correct on the target, then the source's adversarial example must fool the target
    correct = target(X).argmax(1) == Y
    x_adv = attack(source, X[correct], Y[correct]).x_adv
    fooled = torch.zeros_like(correct)
    fooled[correct.nonzero().squeeze(1)] = target(x_adv).argmax(1) != Y[correct]
    assert torch.equal(moved.robust, correct & ~fooled)
    white = evaluate_attack(target, X, Y, attack, progress=False)
    assert white.robust_accuracy <= moved.robust_accuracy  # a surrogate is no better than the model itself


SUITE = {
    "name": "transfer", "dataset": "synthetic", "n_samples": 32, "seed": 0, "batch_size": 32, "check_samples": 24,
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
    (title, matrix), = transfer_matrix(cells).items()
    assert title == "pgd linf ε=0.1" and matrix.shape == (2, 2)
    board = leaderboard(cells).set_index("entry")
    assert len(board) == 2  # transfer cells are not leaderboard rows
    for entry in ("lenet5", "smallcnn"):
        assert matrix.loc[entry, entry] == pytest.approx(board.loc[entry, "pgd linf ε=0.1"])
        assert matrix[entry].min() == pytest.approx(matrix.loc[entry, entry])  # white box is the strongest here


def test_suite_checks_are_stored_and_shown(transferred, tmp_path):
    folder, _, _ = transferred
    checks = read_stores([folder / "r.sqlite"], "checks")
    assert sorted(checks["entry"]) == ["lenet5", "smallcnn"] and set(checks["n"]) == {24}
    board = leaderboard(read_stores([folder / "r.sqlite"]), checks)
    assert set(board["checks"]) <= {"ok"} | {s for s in board["checks"] if "(linf ε=0.1)" in s}
    written = {p.name for p in publish(read_stores([folder / "r.sqlite"]), tmp_path, "transfer", checks=checks)}
    assert {"transfer.transfer.md", "transfer.transfer.csv", "transfer.html"} <= written
    assert "crafted on" in (tmp_path / "transfer.html").read_text()


def test_evaluate_cli_transfer_and_checks(tmp_path):
    runner = CliRunner()
    ckpt = tmp_path / "lenet.safetensors"
    trained = runner.invoke(main, ["train", "--model", "lenet5", "--dataset", "synthetic", "--epochs", "3",
                                   "--batch-size", "32", "--lr", "0.05", "--out", str(ckpt)])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    out = tmp_path / "r.json"
    base = ["evaluate", "--model", "lenet5", "--dataset", "synthetic", "--checkpoint", str(ckpt), "--n-samples", "24",
            "--steps", "3", "--output", str(out)]  # fmt: skip
    result = runner.invoke(main, [*base, "--source-checkpoint", str(ckpt), "--checks", "--check-samples", "16"])
    assert result.exit_code == 0, result.output
    assert "transfer: examples crafted on lenet5" in result.output and "gradient-masking checks" in result.output
    white = runner.invoke(main, base)
    import json

    moved, direct = json.loads(out.read_text())
    assert moved["source_checkpoint_sha256"] == moved["checkpoint_sha256"] and moved["checks"] == "ok"
    assert moved["robust_accuracy"] == direct["robust_accuracy"] and white.exit_code == 0
