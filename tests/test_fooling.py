"""Fooling images: the check, a closed-form reference on a linear model, reproducibility, black box, CLI, runner."""

import io
import json
import time

import pandas as pd
import pytest
import torch
import yaml
from attack_fixtures import tiny_model
from click.testing import CliRunner
from PIL import Image
from torch import nn

from attacks import Fooling
from robustkit.cli import main
from robustkit.data.base import Split
from robustkit.errors import ConfigError
from robustkit.evaluation.engine import evaluate_attack
from robustkit.evaluation.fooling import evaluate_fooling
from robustkit.evaluation.runner import run_suite
from robustkit.results.intervals import proportion_interval
from robustkit.results.leaderboard import entry_cards, leaderboard, plot_curves
from robustkit.results.store import read_stores, unpack
from robustkit.suites.spec import load_suite
from robustkit.threats import threat_model
from robustkit.threats.fooling import confirm_fooling

SHAPE = (1, 6, 6)


def linear_model(seed: int = 0) -> nn.Module:
    """Two classes, logits W x + b: class c's probability is a sigmoid of (W_c − W_j)·x + b_c − b_j."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 2))
    with torch.no_grad():
        model[1].weight.mul_(1.5)  # the corner's confidence ≈ 0.99–0.999: not saturated
    return model.eval()


def corner(model: nn.Module, c: int) -> torch.Tensor:
    """The closed form: the box corner sign(W_c − W_j) (as 0/1 pixels) maximises class c's probability."""
    w = model[1].weight
    return (w[c] > w[1 - c]).float().view(1, *SHAPE)


def test_the_check_accepts_the_closed_form_image_and_rejects_unreached_or_unconfident_ones():
    model = linear_model()
    best = torch.cat([corner(model, 0), corner(model, 1)])
    targets = torch.tensor([0, 1])
    confidence, passed = confirm_fooling(model, best, targets, 0.9)
    assert passed.all() and (confidence > 0.9).all()
    wrong = confirm_fooling(model, best.flip(0), targets, 0.5)  # each the other class's image: class not reached
    assert not wrong[1].any() and (wrong[0] < 0.1).all()
    high = confirm_fooling(model, best, targets, confidence.max().item() + 1e-4)  # reached, below the threshold
    assert not high[1].any()
    threat = threat_model("fooling", 0.9)
    assert threat.contains(best, best, {"target": targets}).all()
    assert not threat.contains(best, best + 0.5, {"target": targets}).any()  # outside [0, 1]
    assert not threat.contains(best, best).any()  # the class sought must be reported


def test_gradient_ascent_reaches_the_closed_form_optimum_on_a_linear_model():
    model = linear_model()
    w, b = model[1].weight, model[1].bias

    def margin(x, c):  # z_c − z_j, the quantity the corner maximises over the box
        return ((w[c] - w[1 - c]) @ x.flatten() + b[c] - b[1 - c]).item()

    for c in (0, 1):
        best = margin(corner(model, c)[0], c)
        report = evaluate_fooling(
            model, Fooling(eps=0.9, early_stop=False, steps=60, step_size=0.2), SHAPE, [c], progress=False
        )
        assert report.passed.all()
        assert margin(report.images[0], c) == pytest.approx(best, abs=1e-3)  # nothing in the box does better
        assert report.confidence.item() == pytest.approx(
            confirm_fooling(model, corner(model, c), torch.tensor([c]), 0)[0].item(), abs=1e-4
        )


@pytest.mark.parametrize("method", ["gradient", "evolution"])
def test_reproducible_from_the_seed_and_independent_of_batch_size(method):
    model = tiny_model()
    attack = Fooling(method=method, steps=15, seed=3)
    one = evaluate_fooling(model, attack, (1, 12, 12), batch_size=4, progress=False)
    other = evaluate_fooling(model, attack, (1, 12, 12), batch_size=1, progress=False)
    # equal up to float rounding: a batched convolution sums in another order than a single image's
    assert torch.allclose(one.images, other.images, atol=1e-4) and torch.equal(one.passed, other.passed)
    assert not torch.equal(
        evaluate_fooling(model, Fooling(method=method, steps=15, seed=4), (1, 12, 12), progress=False).images,
        one.images,
    )


class NoBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise AssertionError("the black-box method took a gradient")


class Sealed(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(NoBackward.apply(x))


def test_evolution_only_queries_probabilities_and_leaves_the_model_alone():
    model = Sealed(tiny_model()).train()
    params = {k: v.clone() for k, v in model.state_dict().items()}
    report = evaluate_fooling(model, Fooling(method="evolution", steps=40), (1, 12, 12), progress=False)
    assert report.fooling_rate > 0 and model.training
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    result = Fooling(method="evolution", steps=5)(model, torch.zeros(4, 1, 12, 12), torch.arange(4))
    assert (result.queries <= 1 + 5 * 16).all() and (result.queries >= 1).all()


class Clocked(nn.Module):
    """The model on a fake clock: each forward pass advances ``clock`` by ``cost`` seconds per image, and
    nothing else does, so every class's own time is known from the passes it was in."""

    def __init__(self, model, clock: list[float], cost: float = 0.01):
        super().__init__()
        self.model, self.clock, self.cost = model, clock, cost

    def forward(self, x):
        self.clock[0] += self.cost * len(x)
        return self.model(x)


@pytest.fixture
def clocked(monkeypatch):
    clock = [0.0]
    model = Clocked(tiny_model(), clock)  # trained (if not yet) on the real clock
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    return model


@pytest.mark.parametrize("settings", [{"steps": 30}, {"method": "evolution", "steps": 15, "population": 4}])
def test_each_image_gets_its_own_time_the_passes_it_was_in(clocked, settings):
    result = Fooling(eps=0.9, **settings)(
        clocked, torch.full((4, 1, 12, 12), 0.5), torch.arange(4), index=torch.arange(4)
    )
    # a step over a images costs cost·a (per image: cost per pass it was in), so an image's share is cost × its passes
    assert torch.allclose(result.extras["seconds"], clocked.cost * result.queries.double())
    assert len(set(result.queries.tolist())) > 1  # images retired at different steps: different times


def test_the_per_class_times_add_up_to_the_run_and_the_summary_is_their_mean(clocked):
    attack = Fooling(eps=0.9, steps=30)
    queries = attack(tiny_model(), torch.full((4, 1, 12, 12), 0.5), torch.arange(4), index=torch.arange(4)).queries
    start = clocked.clock[0]
    report = evaluate_fooling(clocked, attack, (1, 12, 12), progress=False)
    spent = clocked.clock[0] - start - clocked.cost  # less the one pass that counts the model's classes
    # per class: its attack passes, plus an even share of the batch's other passes: two verifications of
    # every image (the attack's and the evaluation's) and the attack's one-image label check
    assert torch.allclose(report.seconds, clocked.cost * (queries.double() + 2 + 1 / 4))
    assert report.total_seconds == pytest.approx(spent) and report.seconds_per_class == pytest.approx(spent / 4)
    figures = report.metrics()
    assert figures["seconds"] == pytest.approx(spent) and figures["images_per_second"] == pytest.approx(4 / spent)
    assert report.extra()["class_seconds"] == pytest.approx(report.seconds.tolist())


def test_bad_classes_and_settings_are_one_line_errors():
    model = tiny_model()
    with pytest.raises(ConfigError, match="class 7 is not one of this 4-class model's classes 0…3"):
        evaluate_fooling(model, Fooling(), (1, 12, 12), [1, 7], progress=False)
    with pytest.raises(ConfigError, match="labels outside 0…3"):
        Fooling()(model, torch.zeros(1, 1, 12, 12), torch.tensor([9]))
    with pytest.raises(ConfigError, match="'blur' is a setting of the other method"):
        Fooling(method="evolution", blur=1.0)
    with pytest.raises(ConfigError, match="probability in"):
        Fooling(eps=1.5)
    with pytest.raises(ConfigError, match="evaluate_fooling"):
        evaluate_attack(
            model, Split(torch.zeros(2, 1, 12, 12), torch.zeros(2, dtype=torch.long)), Fooling(), progress=False
        )


def test_priors_keep_images_in_the_box_and_still_fool():
    report = evaluate_fooling(
        tiny_model(), Fooling(eps=0.9, blur=0.5, jitter=2, decay=0.01, steps=60), (1, 12, 12), progress=False
    )
    assert report.images.min() >= 0 and report.images.max() <= 1 and report.fooling_rate > 0


def test_cli_prints_a_row_per_class_and_writes_the_grid(tmp_path):
    runner = CliRunner()
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
            "fooling",
            "--steps",
            "20",
            "--n-samples",
            "16",
            "--output",
            str(out),
            "--save-examples",
            str(tmp_path / "grid"),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # the table; progress lines go to stderr
    assert lines[0].split()[:4] == ["class", "confidence", "passed", "seconds"] and len(lines) >= 5
    assert all(("✓" in line) or ("✗" in line) for line in lines[1:5]) and "fooling rate:" in result.output
    assert list((tmp_path / "grid").glob("*.png"))
    record = json.loads(out.read_text())[0]
    assert record["norm"] == "fooling" and record["eps"] == 0.99 and record["n"] == 4
    extra = json.loads(record["extra"])
    assert len(extra["confidence"]) == 4 and record["clean_accuracy"] is None  # no clean image was used
    fooled = sum("✓" in line for line in lines[1:5])  # the classes the table says were fooled
    interval = proportion_interval(fooled, 4)
    assert (record["attack_success_rate_low"], record["attack_success_rate_high"]) == (interval.low, interval.high)
    assert f"fooling rate: {fooled / 4:.4f} {interval.text()} (95 % CI; {fooled} of 4 classes" in result.output
    assert record["clean_accuracy_low"] is None and record["clean_accuracy_high"] is None
    # one measurement: the column printed, the summary, the record's per-class times and its seconds agree
    printed = [float(line.split()[3]) for line in lines[1:5]]
    assert printed == pytest.approx(extra["class_seconds"], rel=1e-2)  # 3 significant digits printed
    assert sum(extra["class_seconds"]) == pytest.approx(record["seconds"], abs=1e-5)
    assert extra["seconds_per_class"] == pytest.approx(record["seconds"] / 4)
    assert f"{extra['seconds_per_class']:.3g} s per class ({record['seconds']:.3g} s in all)" in result.output


def test_a_runner_cell_stores_the_fooling_record_and_the_leaderboard_keeps_it_out_of_the_ranking(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTKIT_HOME", str(tmp_path / "home"))
    suite = {
        "name": "fool",
        "dataset": "synthetic",
        "n_samples": 16,
        "seed": 0,
        "batch_size": 32,
        "checks": False,
        "models": [{"model": "lenet5", "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "precision": "fp32"}}],
        "attacks": [
            {"attack": "fgsm", "norm": "linf", "eps": 0.1},
            {"attack": "fooling", "norm": "fooling", "eps": [0.99, 0.25], "settings": {"steps": 20}},
        ],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    run_suite(load_suite(tmp_path / "s.yaml"), tmp_path / "r.sqlite", device=torch.device("cpu"), progress=False)
    cells = read_stores([tmp_path / "r.sqlite"])
    row = cells[(cells["attack"] == "fooling") & (cells["eps"] == 0.99)].iloc[0]
    extra = json.loads(row["extra"])
    robust = unpack(row["robust"], int(row["n"]))
    assert row["n"] == 4 and len(extra["confidence"]) == 4 and "seconds_per_class" in extra
    assert row["robust_accuracy"] == pytest.approx(robust.float().mean().item())
    assert (
        row["attack_success_rate"] == pytest.approx(1 - row["robust_accuracy"]) == pytest.approx(extra["fooling_rate"])
    )
    clean = cells[cells["attack"] == "fgsm"].iloc[0]["clean_accuracy"]
    assert pd.isna(row["clean_accuracy"])  # no clean image was used: null, not the model's figure elsewhere
    table = leaderboard(cells)
    assert table["clean_accuracy"].iloc[0] == clean  # the entry's clean accuracy comes from its other cells
    cards = entry_cards(cells.sort_values("attack", ascending=False), ["lenet5"])  # the fooling cell first
    assert f"<dd>{clean:.4f}</dd>" in cards and "nan" not in cards
    alone = entry_cards(cells[cells["attack"] == "fooling"], ["lenet5"])  # fooling cells only: no clean accuracy
    assert "<dt>clean accuracy</dt><dd>—</dd>" in alone
    assert table["fooling-rate fooling ε=0.99"].iloc[0] == pytest.approx(extra["fooling_rate"])
    assert table["headline linf ε=0.1"].iloc[0] == pytest.approx(
        table["worst linf ε=0.1"].iloc[0]
    )  # never the fooling rate
    assert not any(c.startswith("worst fooling") for c in table.columns)
    fooling_only = cells[cells["attack"] == "fooling"]
    assert plot_curves(fooling_only, tmp_path / "only.svg").stat().st_size > 0  # no budget axis: a note, not a crash
    low = cells[(cells["attack"] == "fooling") & (cells["eps"] == 0.25)].iloc[0]  # a threshold this model reaches
    strip = Image.open(io.BytesIO(low["examples"]))  # the card's strip: the fooling images found, no clean row
    fooled = int((~unpack(low["robust"], int(low["n"]))).sum())
    assert fooled > 0 and strip.size == (fooled * 56 + (fooled - 1) * 4, 56)
