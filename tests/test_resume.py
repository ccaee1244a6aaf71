"""Mid-epoch resume (``checkpoint_every``): a run killed after any step ends with an uninterrupted run's weights."""

import logging
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner
from test_streaming import CLASSES, write_folder
from torch import nn

from defenses import FastTraining, MadryTraining
from robustkit.cli import main
from robustkit.data import FileSplit, get_dataset
from robustkit.data.files import Preprocess
from robustkit.errors import CheckpointError, ConfigError
from robustkit.models import get_model
from robustkit.training import loop as train_module
from robustkit.training.loop import TrainConfig, cross_entropy_loss, train_model
from robustkit.weights.cache import recipe_tag
from robustkit.weights.checkpoint import load_model

DATA = get_dataset("synthetic", num_classes=4, size=12, n_train=256, n_test=64, noise=0.3)
# 8 steps an epoch; saves after global steps 3, 6, 9, 12, 15 (and every epoch's end)
CONFIG = TrainConfig(epochs=2, batch_size=32, lr=0.05, precision="fp32", augment=True, checkpoint_every=3)


class Killed(Exception):
    pass


def dies_at(call: int, loss_fn):
    """``loss_fn`` that raises on its ``call``-th call: the run dies with ``call - 1`` steps taken."""
    calls = [0]

    def loss(*args):
        calls[0] += 1
        if calls[0] == call:
            raise Killed
        return loss_fn(*args)

    return loss


def dropout_model() -> nn.Module:
    """Dropout draws from the global RNG: a resume must repeat those draws too."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(), nn.Linear(8 * 10 * 10, 4))


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_killed_mid_epoch_then_resumed_equals_an_uninterrupted_run(tmp_path, caplog):
    whole = dropout_model()
    train_model(whole, DATA.train, CONFIG, resume_path=tmp_path / "a.resume.pt", progress=False)
    path = tmp_path / "b.resume.pt"
    with pytest.raises(Killed):  # 11 steps taken; the last save was after step 9 (epoch 2, step 1)
        train_model(
            dropout_model(),
            DATA.train,
            CONFIG,
            loss_fn=dies_at(12, cross_entropy_loss()),
            resume_path=path,
            progress=False,
        )
    saved = torch.load(path, weights_only=True)
    assert (saved["next_epoch"], saved["step"]) == (1, 1)
    resumed = dropout_model()
    with caplog.at_level(logging.INFO, logger="robustkit.training.loop"):
        result = train_model(resumed, DATA.train, CONFIG, resume_path=path, progress=False)
    assert "resuming epoch 2, step 1 of 8 done" in caplog.text
    assert [r["epoch"] for r in result.history] == [1, 2] and result.resumed_from_epoch == 1
    assert_same_weights(whole, resumed)


def test_after_a_resume_time_rate_and_summary_are_the_whole_runs(tmp_path, caplog):
    """Issue 23: the epoch line, the summary and the table's time and rate describe one run, the part
    before the kill included; the part since the resume is stated beside them."""
    import time

    def slow(loss_fn):
        def loss(*args):
            time.sleep(0.2)
            return loss_fn(*args)

        return loss

    path = tmp_path / "slow.resume.pt"
    with pytest.raises(Killed):  # 11 steps taken (0.2 s each), the last save after step 9
        train_model(
            dropout_model(),
            DATA.train,
            CONFIG,
            loss_fn=dies_at(12, slow(cross_entropy_loss())),
            resume_path=path,
            progress=False,
        )
    with caplog.at_level(logging.INFO, logger="robustkit.training.loop"):
        result = train_model(dropout_model(), DATA.train, CONFIG, resume_path=path, test=DATA.test, progress=False)
    # the killed part slept ≥ 9 × 0.2 s and is counted; no bound on the resumed part's own time (load decides it)
    assert result.resumed and 0 < result.seconds_here and result.seconds - result.seconds_here >= 9 * 0.2
    assert result.images == 2 * 256 and result.images_per_second == pytest.approx(512 / result.seconds)
    epochs = sum(row["seconds"] for row in result.history)
    assert 9 * 0.2 <= epochs <= result.seconds  # the epoch rows hold the killed part's sleeps: not just this process's
    assert (
        f"after {result.seconds:.0f} s of training (the whole run; {result.seconds_here:.0f} s of it since resuming at epoch 2)"
        in caplog.text
    )


def test_fast_training_resumes_mid_epoch_exactly(tmp_path, monkeypatch):
    import defenses.fast

    defense, config = FastTraining(eps=0.15, guard_samples=32), replace(CONFIG, checkpoint_every=4)  # 7 steps an epoch
    whole = get_model("smallcnn", DATA.info, seed=0)
    defense.fit(whole, DATA.train, config=config, resume_path=tmp_path / "a.resume.pt", progress=False)
    path = tmp_path / "b.resume.pt"
    real = defenses.fast.adversarial_batch
    calls = [0]

    def dies_at_step_10(*args):  # the inner attack of the 11th step: 10 taken, the last save after step 8
        calls[0] += 1
        if calls[0] == 11:
            raise Killed
        return real(*args)

    monkeypatch.setattr(defenses.fast, "adversarial_batch", dies_at_step_10)
    with pytest.raises(Killed):
        defense.fit(
            get_model("smallcnn", DATA.info, seed=0), DATA.train, config=config, resume_path=path, progress=False
        )
    monkeypatch.setattr(defenses.fast, "adversarial_batch", real)
    saved = torch.load(path, weights_only=True)
    assert (saved["next_epoch"], saved["step"]) == (1, 1) and saved["guard"]["best_accuracy"] >= 0
    resumed = get_model("smallcnn", DATA.info, seed=0)
    defense.fit(resumed, DATA.train, config=config, resume_path=path, progress=False)
    assert_same_weights(whole, resumed)


def test_a_streaming_split_resumes_mid_epoch_exactly(tmp_path):
    root = write_folder(tmp_path / "folder", 48)
    opened = get_dataset("imagefolder", data_dir=root, image_size=16, workers=0).test
    train = FileSplit(opened.files, opened.labels, Preprocess(16, random=True), workers=1)  # random: it streams
    config = TrainConfig(epochs=2, batch_size=8, lr=0.05, precision="fp32", checkpoint_every=4)  # 6 steps an epoch

    def model() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(), nn.Linear(4 * 7 * 7, len(CLASSES))
        )

    whole = model()
    train_model(whole, train, config, resume_path=tmp_path / "a.resume.pt", progress=False)
    path = tmp_path / "b.resume.pt"
    with pytest.raises(Killed):
        train_model(model(), train, config, loss_fn=dies_at(11, cross_entropy_loss()), resume_path=path, progress=False)
    saved = torch.load(path, weights_only=True)
    assert (saved["next_epoch"], saved["step"]) == (1, 2)  # saved after global step 8, killed after step 10
    resumed = model()
    train_model(resumed, train, config, resume_path=path, progress=False)
    assert_same_weights(whole, resumed)


def test_a_resume_file_of_another_model_or_defense_is_one_clear_line(tmp_path):
    path = tmp_path / "c.resume.pt"
    with pytest.raises(Killed):
        train_model(
            get_model("smallcnn", DATA.info, seed=0),
            DATA.train,
            CONFIG,
            loss_fn=dies_at(5, cross_entropy_loss()),
            resume_path=path,
            progress=False,
        )
    with pytest.raises(CheckpointError, match=r"other settings \(model\)"):
        train_model(get_model("lenet5", DATA.info, seed=0), DATA.train, CONFIG, resume_path=path, progress=False)
    with pytest.raises(CheckpointError, match=r"other settings \(objective\)"):
        MadryTraining(eps=0.1, steps=2).fit(
            get_model("smallcnn", DATA.info, seed=0), DATA.train, config=CONFIG, resume_path=path, progress=False
        )
    # how often state is saved is no recipe: another interval resumes the same run
    train_model(
        get_model("smallcnn", DATA.info, seed=0),
        DATA.train,
        replace(CONFIG, checkpoint_every=None),
        resume_path=path,
        progress=False,
    )


def test_checkpoint_every_is_validated_and_names_no_recipe():
    with pytest.raises(ConfigError, match="checkpoint_every"):
        TrainConfig(checkpoint_every=0)
    with pytest.raises(ConfigError, match="resume_path"):
        train_model(dropout_model(), DATA.train, CONFIG, progress=False)
    assert recipe_tag("lenet5", None, {"checkpoint_every": 100}) is None
    assert recipe_tag("lenet5", None, {"epochs": 3, "checkpoint_every": 100}) == recipe_tag(
        "lenet5", None, {"epochs": 3}
    )
    assert "checkpoint_every" not in CONFIG.recipe()


def test_cli_checkpoint_every_then_resume(isolated_home, tmp_path, monkeypatch):
    args = [
        "train",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--precision",
        "fp32",
        "--checkpoint-every",
        "5",
    ]
    runner = CliRunner()
    assert runner.invoke(main, [*args, "--out", str(tmp_path / "whole.safetensors")]).exit_code == 0
    real = train_module.cross_entropy_loss
    monkeypatch.setattr(train_module, "cross_entropy_loss", lambda *a: dies_at(8, real(*a)))
    killed = runner.invoke(main, [*args, "--out", str(tmp_path / "cut.safetensors")])
    assert isinstance(killed.exception, Killed) and (tmp_path / "cut.safetensors.resume.pt").exists()
    monkeypatch.setattr(train_module, "cross_entropy_loss", real)
    resumed = runner.invoke(main, [*args, "--out", str(tmp_path / "cut.safetensors"), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming epoch 1, step 5 of" in resumed.output
    assert "seconds and img/s cover the whole run: " in resumed.output
    assert not (tmp_path / "cut.safetensors.resume.pt").exists()  # finished: nothing left to resume
    assert_same_weights(load_model(tmp_path / "whole.safetensors")[0], load_model(tmp_path / "cut.safetensors")[0])


_DDP_SCRIPT = """
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from robustkit.training import distributed
from robustkit.training.loop import cross_entropy_loss, train_model
from test_resume import CONFIG, DATA, Killed, dies_at, dropout_model

distributed.init_from_env(torch.device("cpu"))
out = Path(sys.argv[1])
whole = dropout_model()
train_model(whole, DATA.train, CONFIG, resume_path=out / "a.resume.pt", progress=False)
try:  # 8 steps of 16 images an epoch per rank: saved after steps 3 and 6; killed after step 6 on both ranks
    train_model(dropout_model(), DATA.train, CONFIG, loss_fn=dies_at(7, cross_entropy_loss()),
                resume_path=out / "b.resume.pt", progress=False)
except Killed:
    pass
dist.barrier()
assert torch.load(out / "b.resume.pt", weights_only=True)["step"] == 6
resumed = dropout_model()
train_model(resumed, DATA.train, CONFIG, resume_path=out / "b.resume.pt", progress=False)
same = all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
(out / f"rank{dist.get_rank()}").write_text(str(same))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_process_training_resumes_mid_epoch_exactly(tmp_path, monkeypatch):
    import os

    from torchrun import torchrun

    script = tmp_path / "ddp_resume.py"
    script.write_text(_DDP_SCRIPT)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    torchrun([str(script), str(tmp_path)])
    assert (tmp_path / "rank0").read_text() == "True" == (tmp_path / "rank1").read_text()
