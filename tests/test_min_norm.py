"""Minimum-norm attacks (CW, FMN) and the ε-curve from one run: the engine's rule, the attacks against
PGD and peer libraries, the record, the CLI and the leaderboard's line."""

import json
import math
import re
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from attack_fixtures import DATA, tiny_batch, tiny_model
from click.testing import CliRunner
from torch import nn

from attacks import CW, FMN, PGD
from robustkit.attack import Attack, Perturbed
from robustkit.cli import main
from robustkit.data import get_dataset
from robustkit.data.base import Split
from robustkit.errors import ConfigError
from robustkit.evaluation.api import evaluate_model
from robustkit.evaluation.engine import evaluate_attack
from robustkit.registry import ATTACKS
from robustkit.results.intervals import Interval, proportion_interval
from robustkit.results.norm_curve import curve_budgets, row_evaluation
from robustkit.results.store import ResultStore

# ---- the engine's rule, pinned with an attack whose norms are set by hand ----


class Brightness(nn.Module):
    """Class 1 exactly when the mean pixel exceeds 0.5: a uniform shift c of 4×4 pixels fools it iff
    the mean crosses 0.5, and its L2 norm is 4c."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        m = x.flatten(1).mean(1) - 0.5
        return torch.stack([-m, m], 1) * self.scale


@dataclass(frozen=True, kw_only=True)
class Shift(Attack):
    """Adds the per-sample shift ``SHIFTS[index]`` to every pixel (the same δ whatever ε)."""

    norm: str = "l2"
    min_norm: bool = True
    norms: ClassVar[tuple[str, ...]] = ("l2",)
    SHIFTS: ClassVar[torch.Tensor] = torch.tensor([0.05, 0.31, 0.34, 0.45, 0.6, 0.4])

    @property
    def minimum_norm(self) -> bool:
        return self.min_norm

    def perturb(self, model, x, y, *, target, rng):
        return Perturbed(x + self.SHIFTS[rng.index].view(-1, 1, 1, 1))


def test_the_engine_verifies_each_min_norm_example_at_its_own_norm_and_counts_it_up_to_eps():
    model, x, y = Brightness(), torch.full((6, 1, 4, 4), 0.2), torch.zeros(6, dtype=torch.long)
    evaluation = evaluate_attack(model, Split(x, y), Shift(eps=1.4), progress=False, batch_size=4)
    # a shift of c fools the model iff 0.2 + c > 0.5; its norm is 4c whatever ε (outside the ball: not clipped)
    expected = torch.tensor([math.nan, 1.24, 1.36, 1.8, 2.4, 1.6])
    assert evaluation.n_unverified == 0
    assert torch.allclose(evaluation.norms, expected, equal_nan=True, atol=1e-5)
    assert evaluation.robust.tolist() == [True, False, False, True, True, True]  # broken at ε=1.4 only up to 1.4
    assert evaluation.curve([0, 1.3, 1.4, 1.7, 2.0, 3.0]) == pytest.approx([1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    assert evaluation.curve([1.4])[0] == evaluation.robust_accuracy
    bounded = evaluate_attack(
        model, Split(x, y), Shift(eps=1.4, min_norm=False), progress=False
    )  # clipped to the ε-ball
    assert torch.allclose(bounded.norms, torch.tensor([math.nan, 1.24, 1.36, 1.4, 1.4, 1.4]), equal_nan=True, atol=1e-5)


# ---- the attacks ----


def _correct(n=64):
    model, (x, y) = tiny_model(), tiny_batch(n)
    keep = model(x).argmax(1) == y
    return model, x[keep], y[keep]


@pytest.mark.parametrize(
    "attack", [FMN(eps=0.1), FMN(eps=1.0, norm="l2"), CW(eps=1.0)], ids=["fmn-linf", "fmn-l2", "cw"]
)
def test_min_norm_examples_are_verified_and_their_norms_are_the_engines_own(attack):
    assert attack.minimum_norm and ATTACKS.get(attack.name) is type(attack)
    model = tiny_model()
    evaluation = evaluate_attack(model, DATA.test, attack, progress=False)
    assert evaluation.n_unverified == 0
    found = ~evaluation.norms.isnan()
    assert found.sum() >= 0.95 * evaluation.clean_correct.sum()  # a minimum-norm attack breaks almost every sample
    x, y = DATA.test.images, DATA.test.labels
    attacked = evaluation.clean_correct.nonzero().squeeze(1)
    result = attack(model, x[attacked], y[attacked], index=attacked)
    measured = attack.threat.norm(result.x_adv - x[attacked])
    assert torch.allclose(result.norms, measured)
    assert torch.allclose(evaluation.norms[attacked][result.success], measured[result.success])
    assert ((measured > attack.eps) & result.success).any()  # examples beyond ε are kept, not clipped to the ball


@pytest.mark.parametrize(
    "attack", [FMN(eps=0.1), FMN(eps=1.0, norm="l2"), CW(eps=1.0)], ids=["fmn-linf", "fmn-l2", "cw"]
)
def test_targeted_min_norm_attacks_reach_the_target(attack):
    model, x, y = _correct(32)
    target = (y + 1) % 4
    result = attack(model, x, y, target=target)
    assert result.success.float().mean() > 0.9
    assert torch.equal(result.success, model(result.x_adv).argmax(1) == target)
    untargeted = attack(model, x, y)
    both = result.success & untargeted.success
    assert (result.norms[both] >= untargeted.norms[both] * 0.9).float().mean() > 0.8  # one class is no nearer than any


@pytest.mark.parametrize("norm, budgets", [("linf", [0.03, 0.06, 0.1, 0.15, 0.2]), ("l2", [0.3, 0.6, 1.0, 1.5, 2.0])])
def test_the_one_run_curve_agrees_with_pgd_runs_at_each_eps(norm, budgets):
    model, eps = tiny_model(), budgets[2]
    evaluation = evaluate_attack(model, DATA.test, FMN(eps=eps, norm=norm), progress=False)
    curve = evaluation.curve(budgets)
    assert curve == sorted(curve, reverse=True)  # monotone non-increasing in ε
    assert curve[2] == evaluation.robust_accuracy  # at the run's ε: the headline figure
    swept = [
        evaluate_attack(model, DATA.test, PGD(eps=e, norm=norm, steps=20, restarts=2), progress=False).robust_accuracy
        for e in budgets
    ]
    # 64 samples: one sample is 0.016; FMN (one run) within 4 samples of five PGD runs at each ε
    assert max(abs(a - b) for a, b in zip(curve, swept, strict=True)) <= 4 / 64, (curve, swept)
    cw = evaluate_attack(model, DATA.test, CW(eps=eps), progress=False).curve(budgets) if norm == "l2" else curve
    assert max(abs(a - b) for a, b in zip(cw, swept, strict=True)) <= 4 / 64, (cw, swept)


# the tiny model's data with 512 test images, so that 0.01 of robust accuracy is 5 images, not a third of one
WIDE = get_dataset("synthetic", num_classes=4, channels=1, size=12, n_train=256, n_test=512, noise=0.3)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0)])
def test_fmn_early_stop_saves_passes_and_moves_the_curve_by_a_few_images_at_most(norm, eps):
    """Opt-in, as README says: it moved the curve by 0.007 (L∞) and 0.013 (L2) on smallcnn at n = 300, so
    it cannot promise 0.01; the bound checked here is 0.015 (0.0078 and 0.0098 measured on this model)."""
    model, x, y = tiny_model(), WIDE.test.images, WIDE.test.labels
    every, early = FMN(eps=eps, norm=norm)(model, x, y), FMN(eps=eps, norm=norm, early_stop=True)(model, x, y)
    assert (every.queries == 100).all() and early.queries.float().mean() < 90
    # the same search until a sample stops: its norm is its full run's best at that step, never smaller
    found = every.success & early.success
    assert torch.equal(found, every.success)
    ran_on = early.queries == 100
    assert torch.equal(early.norms[found & ran_on], every.norms[found & ran_on])
    assert (early.norms[found] >= every.norms[found]).all() and (early.norms[found] > every.norms[found]).any()
    # robust accuracy at ε counts the images no example of norm ≤ ε broke; it only steps at a found norm
    correct = model(x).argmax(1) == y

    def robust(result, e):
        return (correct & ~(result.success & (result.norms <= e))).float().mean().item()

    steps = torch.cat([every.norms[found], early.norms[found]]).tolist()
    assert max(abs(robust(every, e) - robust(early, e)) for e in steps) <= 0.015


def _median(norms):
    return norms.median().item()


def test_cw_against_torchattacks_cw():
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = _correct()
    ours = CW(eps=1.0)(model, x, y)
    theirs = torchattacks.CW(model, c=1, kappa=0, steps=100, lr=0.05)(
        x, y
    )  # one value of c (their default search-free run)
    their_success = model(theirs).argmax(1) != y
    their_norms = (theirs - x).flatten(1).norm(dim=1)
    assert ours.success.sum() >= their_success.sum()  # the binary search over c finds at least as many
    both = ours.success & their_success
    # on the samples both broke, ours are no larger than 1.1× theirs in the median (c shrinks: usually smaller)
    assert _median(ours.norms[both]) <= 1.1 * _median(their_norms[both])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fmn_against_foolbox_fmn(norm):
    foolbox = pytest.importorskip("foolbox")
    model, x, y = _correct()
    ours = FMN(eps=0.1 if norm == "linf" else 1.0, norm=norm)(model, x, y)
    attack = foolbox.attacks.LInfFMNAttack() if norm == "linf" else foolbox.attacks.L2FMNAttack()
    _, adv, success = attack(foolbox.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=None)
    theirs = (adv - x).flatten(1).norm(p=float("inf") if norm == "linf" else 2, dim=1)
    assert ours.success.sum() >= success.sum()
    # same algorithm; ours steps along the box-feasible gradient (and Foolbox 3.3's L2 projection is a no-op),
    # so the median verified norm is no worse than 1.05× Foolbox's
    assert _median(ours.norms[ours.success]) <= 1.05 * _median(theirs[success])


def test_unsupported_threat_models_are_refused_in_one_line(isolated_home):
    with pytest.raises(ConfigError, match=r"^CW attacks l2, not 'linf' \(attacks for linf: .*fmn.*\)$"):
        CW(eps=0.1, norm="linf")
    with pytest.raises(ConfigError, match=r"^FMN attacks linf, l2, not 'l0' \(attacks for l0: .*one-pixel.*\)$"):
        ATTACKS.build("fmn", eps=1, norm="l0")
    with pytest.raises(ConfigError, match="gamma"):
        FMN(eps=0.1, gamma=1.5)
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--model",
            "lenet5",
            "--dataset",
            "synthetic",
            "--attack",
            "cw",
            "--norm",
            "linf",
            "--n-samples",
            "8",
        ],
    )
    lines = result.output.strip().splitlines()
    assert (
        result.exit_code != 0
        and len(lines) == 1
        and lines[0].startswith("Error: CW attacks l2, not 'linf' (attacks for linf: ")
    )
    assert not (isolated_home / "checkpoints").exists()  # refused before any training


def test_the_record_holds_the_norms_and_the_curve_is_recomputed_from_any_output(tmp_path):
    report = evaluate_model(tiny_model(), DATA, "fmn", eps=0.1, n_samples=64, progress=False)
    norms = report.record["extra"]["norms"]
    assert len(norms) == 64 and None in norms  # wrongly classified samples have none
    assert torch.allclose(
        torch.tensor([math.nan if v is None else v for v in norms]), report.outcome.norms, equal_nan=True
    )
    budgets = [0.0, 0.05, 0.1, 0.2]
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.put(report.record)
        stored = store.frame().iloc[0].to_dict()
    again = row_evaluation(stored)
    assert again.curve(budgets) == report.outcome.curve(budgets)
    assert again.curve([0.1])[0] == pytest.approx(stored["robust_accuracy"])
    pgd = evaluate_model(tiny_model(), DATA, "pgd", eps=0.1, n_samples=64, progress=False)
    assert "norms" not in pgd.record["extra"] and row_evaluation(pgd.record) is None


def test_the_leaderboard_draws_a_min_norm_cells_curve_from_its_stored_norms():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from robustkit.results.leaderboard import _draw_one_run_curves
    from robustkit.results.records import text_row

    report = evaluate_model(tiny_model(), DATA, "fmn", eps=0.1, n_samples=32, progress=False)
    row = {
        **text_row(report.record),
        "clean_correct": report.record["clean_correct"],
        "robust": report.record["robust"],
    }
    _, ax = plt.subplots()
    _draw_one_run_curves(ax, pd.DataFrame([row]))
    (line,) = ax.get_lines()
    budgets = curve_budgets(report.outcome.norms, 0.1)
    assert "fmn (one run)" in line.get_label()
    assert list(line.get_xdata()) == budgets and list(line.get_ydata()) == report.outcome.curve(budgets)
    plt.close("all")


def test_the_curve_plot_shades_each_steps_95_percent_interval():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robustkit.results.norm_curve import draw_curve

    outcome = evaluate_model(tiny_model(), DATA, "fmn", eps=0.1, n_samples=32, checks="none", progress=False).outcome
    _, ax = plt.subplots()
    draw_curve(ax, outcome, 0.1, "one run", band=True)
    budgets = curve_budgets(outcome.norms, 0.1)
    robust = [int((outcome.clean_correct & ~(outcome.norms <= b)).sum()) for b in budgets]  # per step, from the norms
    ends = {round(end, 12) for k in robust for end in (proportion_interval(k, 32).low, proportion_interval(k, 32).high)}
    (band,) = ax.collections
    assert len(set(robust)) > 2 and {round(y, 12) for y in band.get_paths()[0].vertices[:, 1]} == ends
    plt.close("all")


def test_cli_fmn_prints_the_figure_at_eps_the_median_norm_and_writes_the_curve(tmp_path):
    runner = CliRunner()
    checkpoint, out = tmp_path / "tiny.safetensors", tmp_path / "r.json"
    trained = runner.invoke(
        main, ["train", "--model", "lenet5", "--dataset", "synthetic", "--epochs", "3", "--out", str(checkpoint)]
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
            "fmn",
            "--eps",
            "0.1",
            "--n-samples",
            "32",
            "--output",
            str(out),
            "--save-examples",
            str(tmp_path / "ex"),
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())[0]
    extra = json.loads(record["extra"])
    norms = torch.tensor([math.nan if v is None else v for v in extra["norms"]])
    median = norms.nanmedian().item()
    at_eps = Interval(record["robust_accuracy_low"], record["robust_accuracy_high"]).text()
    assert (
        f"robust accuracy {record['robust_accuracy']:.4f} {at_eps} at ε=0.1, median verified norm {median:.4g}"
        in result.output
    )
    assert record["norm"] == "linf" and record["median_norm"] == pytest.approx(median)
    robust_at_half = round(record["clean_accuracy"] * 32) - (norms <= 0.05).sum().item()
    point = f"{robust_at_half / 32:.4f} {proportion_interval(robust_at_half, 32).text()}"
    assert re.search(
        rf"ε=0\.05:\s+{re.escape(point)}\n", result.output
    )  # the curve at ½ε from the norms, with its interval
    assert (tmp_path / "ex" / "lenet5-fmn-linf-curve.png").is_file()
