"""Defenses: adversarial training must buy robustness, leave BatchNorm alone, resume exactly, scale out."""

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torchrun import torchrun

from attacks import PGD
from defenses import FastTraining, MadryTraining, TradesTraining
from robustkit.cli import main
from robustkit.data import get_dataset
from robustkit.data.base import Split
from robustkit.evaluation.engine import evaluate_attack
from robustkit.models import get_model
from robustkit.predict import accuracy
from robustkit.training.loop import StepContext, TrainConfig, train_model
from robustkit.weights.checkpoint import load_model

DATA = get_dataset("synthetic", num_classes=4, size=12, n_train=512, n_test=128, noise=0.3)
EPS = 0.15
CONFIG = TrainConfig(epochs=4, batch_size=32, lr=0.05, precision="fp32")


def robust_accuracy(model) -> float:
    return evaluate_attack(
        model.eval(), Split(DATA.test.images, DATA.test.labels), PGD(eps=EPS, steps=10), progress=False
    ).robust_accuracy


def test_madry_training_buys_robustness_over_standard_training_at_equal_budget():
    standard = get_model("smallcnn", DATA.info, seed=0)
    train_model(standard, DATA.train, CONFIG, progress=False)
    madry = get_model("smallcnn", DATA.info, seed=0)
    MadryTraining(eps=EPS, steps=5).fit(madry, DATA.train, config=CONFIG, progress=False)
    assert robust_accuracy(madry) > robust_accuracy(standard) + 0.2
    assert accuracy(madry, DATA.test) > 0.9


class CountingBN(nn.BatchNorm2d):
    train_forwards = 0

    def forward(self, x):
        CountingBN.train_forwards += self.training
        return super().forward(x)


def test_inner_attack_runs_in_eval_mode_and_training_mode_comes_back():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), CountingBN(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 4)).train()
    x, y = DATA.train.images[:16], DATA.train.labels[:16]
    CountingBN.train_forwards = 0
    before = model[1].num_batches_tracked.item()
    ctx = StepContext(0, 0.0, torch.Generator().manual_seed(0), model, want_clean=True)
    out = MadryTraining(eps=EPS, steps=7).loss_fn()(model, x, y, ctx)
    assert all(m.training for m in model.modules())
    # seven attack passes and one clean pass for the bar, all in eval mode; one training forward
    assert CountingBN.train_forwards == 1 and model[1].num_batches_tracked.item() == before + 1
    assert torch.isfinite(out.loss) and out.clean_logits is not None


class Killed(Exception):
    pass


def test_resume_continues_from_the_saved_epoch_exactly(tmp_path):
    def run(resume_path, kill_after=None):
        model = get_model("smallcnn", DATA.info, seed=0)

        def hook(m, epoch):
            if epoch == kill_after:
                raise Killed  # dies before this epoch is saved
            return False

        result = train_model(
            model,
            DATA.train,
            CONFIG,
            loss_fn=MadryTraining(eps=EPS, steps=3).loss_fn(),
            on_epoch_end=hook,
            resume_path=resume_path,
            progress=False,
        )
        return model, result

    whole, _ = run(tmp_path / "a.resume.pt")
    with pytest.raises(Killed):
        run(tmp_path / "b.resume.pt", kill_after=2)
    resumed, result = run(tmp_path / "b.resume.pt")
    assert result.resumed_from_epoch == 2 and [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_fast_training_guard_restores_the_best_epoch_after_a_collapse():
    model = get_model("smallcnn", DATA.info, seed=0)
    defense = FastTraining(eps=EPS, guard_samples=64)
    trained_on, guard = defense.held_out(DATA.train)
    assert len(guard) == 64 and len(trained_on) == len(DATA.train) - 64
    defense.fit(model, DATA.train, config=CONFIG, progress=False)
    check = defense.on_epoch_end(guard)
    assert check(model, 0) is False  # first look: remembered as the best
    good = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0)  # a collapsed network
    assert check(model, 1) is True
    assert all(torch.equal(v, good[k]) for k, v in model.state_dict().items())


def test_trades_trains_to_a_robust_model():
    model = get_model("smallcnn", DATA.info, seed=0)
    result = TradesTraining(eps=EPS, steps=3).fit(model, DATA.train, config=CONFIG, progress=False)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)
    assert accuracy(model, DATA.test) > 0.8 and robust_accuracy(model) > 0.3


def test_cli_caches_by_defense_and_eps_and_evaluate_finds_it(isolated_home):
    runner = CliRunner()
    train = runner.invoke(
        main,
        [
            "train",
            "--model",
            "lenet5",
            "--dataset",
            "synthetic",
            "--defense",
            "madry",
            "--eps",
            "0.2",
            "--steps",
            "3",
            "--epochs",
            "2",
        ],
    )
    assert train.exit_code == 0, train.output
    # --epochs is beyond the default recipe, so the checkpoint's name carries a recipe tag
    (path,) = (isolated_home / "checkpoints" / "synthetic").glob("lenet5-madry-linf-eps0.2-recipe*.safetensors")
    _, record = load_model(path)
    assert record.defense == "madry" and record.defense_settings["eps"] == 0.2
    assert record.defense_settings["steps"] == 3 and not list(path.parent.glob("*.resume.pt"))
    evaluate = runner.invoke(
        main,
        [
            "evaluate",
            "--model",
            "lenet5",
            "--dataset",
            "synthetic",
            "--defense",
            "madry",
            "--eps",
            "0.2",
            "--n-samples",
            "16",
        ],
    )
    assert evaluate.exit_code == 0, evaluate.output
    assert "training one" not in evaluate.output and f"using {path}" in evaluate.output


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path):
    out = tmp_path / "ddp.safetensors"
    done = torchrun(
        [
            "-m",
            "robustkit",
            "train",
            "--model",
            "lenet5",
            "--dataset",
            "synthetic",
            "--epochs",
            "6",
            "--batch-size",
            "64",
            "--lr",
            "0.05",
            "--precision",
            "fp32",
            "--out",
            str(out),
        ]
    )
    model, record = load_model(out)
    assert record.train_settings["processes"] == 2
    assert accuracy(model, get_dataset("synthetic").test) > 0.9
    # only rank 0 speaks, as only rank 0 writes: each of its lines once, not once per process
    lines = (done.stdout + done.stderr).splitlines()
    said = [f"epoch {k}/6: loss" for k in range(1, 7)] + ["training 512 images", "test accuracy", "checkpoint:"]
    assert {start: sum(line.startswith(start) for line in lines) for start in said} == dict.fromkeys(said, 1)


def test_resume_refuses_a_run_made_with_other_settings(tmp_path):
    from dataclasses import replace

    from robustkit.errors import CheckpointError

    path = tmp_path / "c.resume.pt"
    model = get_model("smallcnn", DATA.info, seed=0)

    def stop_after_first(m, epoch):
        raise Killed

    with pytest.raises(Killed):
        train_model(model, DATA.train, CONFIG, on_epoch_end=stop_after_first, resume_path=path, progress=False)
    assert not path.exists()  # killed before the first epoch was saved: nothing to resume
    train_model(model, DATA.train, replace(CONFIG, epochs=1), resume_path=path, progress=False)
    assert path.exists()
    with pytest.raises(CheckpointError, match="other settings.*epochs"):
        train_model(get_model("smallcnn", DATA.info, seed=0), DATA.train, CONFIG, resume_path=path, progress=False)


def test_guard_state_travels_with_the_resume_file():
    from defenses.fast import OverfittingGuard

    defense = FastTraining(eps=EPS, guard_samples=64)
    _, guard_split = defense.held_out(DATA.train)
    model = get_model("smallcnn", DATA.info, seed=0)
    first = defense.on_epoch_end(guard_split)
    first(model, 0)
    second = OverfittingGuard(guard_split, PGD(eps=EPS, steps=10), defense.guard_drop)
    second.load_state_dict(first.state_dict())
    assert second.best_accuracy == first.best_accuracy >= 0
