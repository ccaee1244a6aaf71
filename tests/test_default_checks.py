"""The default (cheap) gradient-masking checks: on by default, silent on normal models, loud on masked ones,
quiet again once the attack is adapted (BPDA, EOT); flagged figures marked in every leaderboard format."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import yaml
from attack_fixtures import DATA, tiny_model
from click.testing import CliRunner

from attacks import PGD, Square
from defenses import BitDepthReduction, GaussianNoise, JpegQuantization
from robustkit.adaptation import Adaptation, check_level
from robustkit.cli import main
from robustkit.errors import ConfigError
from robustkit.evaluation.checks import Flag, answered_flags, bounded_layers, run_checks, unadapted_layers
from robustkit.evaluation.runner import run_suite
from robustkit.results.leaderboard import leaderboard, render
from robustkit.results.store import read_stores
from robustkit.suites.spec import load_suite

X, Y = DATA.test.images[:48], DATA.test.labels[:48]
MASKING = {
    "bit-depth": BitDepthReduction(bits=2),
    "jpeg": JpegQuantization(quality=20),
    "gaussian-noise": GaussianNoise(sigma=0.3),
}


def default_flags(model, adaptation=Adaptation()) -> set[str]:
    return {
        f.check for f in run_checks(model, X, Y, norm="linf", eps=0.1, level="default", adaptation=adaptation).flags
    }


def test_the_default_checks_stay_silent_on_a_normal_model():
    report = run_checks(tiny_model(), X, Y, norm="linf", eps=0.1, level="default")
    assert report.ok, [f.line() for f in report.flags]
    assert report.figures["pgd_accuracy_unbounded"] == 0.0 and report.figures["gradient_zero_fraction"] == 0.0
    assert "pgd_accuracy_eps_x0.5" not in report.figures  # the ε sweep is the full set's


@pytest.mark.parametrize("name", list(MASKING))
def test_the_default_checks_flag_masking_defenses_under_plain_pgd(name):
    assert default_flags(MASKING[name].wrap(tiny_model()).eval())


def test_the_default_checks_judge_an_adapted_attack_as_adapted():
    """BPDA sees through rounding, EOT answers randomness: the same checks, run as the attack runs, are quiet."""
    rounding = BitDepthReduction(bits=2).wrap(tiny_model()).eval()
    assert {"zero-gradients", "unbounded-attack-fails"} <= default_flags(rounding)
    assert not default_flags(rounding, Adaptation(bpda=True))
    noisy = GaussianNoise(sigma=0.3).wrap(tiny_model()).eval()
    assert "randomised-forward" in default_flags(noisy)
    assert "randomised-forward" not in default_flags(noisy, Adaptation(eot=8))


def test_the_default_probes_run_only_where_they_can_raise_a_flag():
    """Whole-box PGD and Square attack only what the evaluated attack left, and only when that is enough to cross
    their thresholds (0.1; the tolerance plus one sample): a probe that ran gives its figure, one that could not
    flag is left out of the figures."""
    few = torch.zeros(len(Y), dtype=torch.bool)
    few[:2] = True  # 2 of 48 left: 0.042, under both thresholds (0.1 and 0.03 + 1/48)
    quiet = run_checks(tiny_model(), X, Y, norm="linf", eps=0.1, level="default", white=few)
    assert quiet.ok and quiet.figures["white_box_accuracy"] == pytest.approx(2 / 48)
    assert "pgd_accuracy_unbounded" not in quiet.figures and "broken_only_by_square" not in quiet.figures
    rounding = BitDepthReduction(bits=2).wrap(tiny_model()).eval()
    loud = run_checks(rounding, X, Y, norm="linf", eps=0.1, level="default", white=torch.ones(len(Y), dtype=torch.bool))
    assert "pgd_accuracy_unbounded" in loud.figures and "broken_only_by_square" in loud.figures
    assert {"zero-gradients", "unbounded-attack-fails"} <= {f.check for f in loud.flags}


def _margin_gradient_is_zero(model, i: int) -> bool:
    """Sample i's logit-margin input gradient, by hand (one image, plain autograd), is exactly 0."""
    x = X[i : i + 1].clone().requires_grad_(True)
    logits = model(x)[0]
    others = logits.masked_fill(torch.arange(len(logits)) == Y[i], float("-inf"))
    (grad,) = torch.autograd.grad(others.max() - logits[Y[i]], x, allow_unused=True)
    return grad is None or bool((grad == 0).all())


def test_the_default_gradient_checks_look_where_the_attack_failed():
    """A broken sample cannot inflate the figure: only the samples the evaluated attack left are differentiated,
    the fraction is of all n; with enough of them left, blind gradients are still flagged."""
    rounding = BitDepthReduction(bits=2).wrap(tiny_model()).eval()
    for left, flagged in ((10, True), (2, False)):  # 10/48 > 0.05 > 2/48
        white = torch.arange(len(Y)) < left
        report = run_checks(rounding, X, Y, norm="linf", eps=0.1, level="default", white=white)
        expected = sum(_margin_gradient_is_zero(rounding, i) for i in range(left)) / len(Y)
        assert report.figures["gradient_zero_fraction"] == expected == left / len(Y)
        assert ("zero-gradients" in {f.check for f in report.flags}) is flagged
    nothing_left = run_checks(
        tiny_model(), X, Y, norm="linf", eps=0.1, level="default", white=torch.zeros(len(Y), dtype=torch.bool)
    )
    assert nothing_left.ok and nothing_left.figures["forward_max_difference"] == 0.0  # two passes of its own


class OneDrawPerCall(torch.nn.Module):
    """Noise drawn once per call, the same for every sample of the batch: duplicates inside one batch would agree."""

    def __init__(self):
        super().__init__()
        self.model = tiny_model()

    def forward(self, x):
        return self.model(x + 0.2 * torch.randn(1, *x.shape[1:]))


@pytest.mark.parametrize("left", [0, 10])
def test_the_determinism_check_sees_a_draw_per_call_on_its_few_samples(left):
    torch.manual_seed(0)
    white = torch.arange(len(Y)) < left
    report = run_checks(OneDrawPerCall().eval(), X, Y, norm="linf", eps=0.1, level="default", white=white)
    assert "randomised-forward" in {f.check for f in report.flags}


def test_the_probes_on_known_correct_samples_agree_with_the_engine():
    """Whole-box PGD and Square attack samples the evaluated attack left (so classified correctly) without the
    engine's clean pass: per sample, the same outcome as through ``evaluate_attack``, randomised model included."""
    from robustkit.data.base import Split
    from robustkit.evaluation.checks import _broken
    from robustkit.evaluation.engine import evaluate_attack

    for model in (tiny_model(), GaussianNoise(sigma=0.1).wrap(tiny_model()).eval()):
        correct = evaluate_attack(model, Split(X, Y), PGD(eps=0.0, steps=1), progress=False).clean_correct
        x, y = X[correct], Y[correct]
        for attack in (Square(eps=0.1, queries=30, patience=5), PGD(eps=0.05, steps=5)):
            engine = evaluate_attack(model, Split(x, y), attack, batch_size=16, progress=False)
            assert engine.clean_correct.all()
            assert torch.equal(_broken(model, attack, x, y, batch_size=16), ~engine.robust)


def test_a_saturated_softmax_is_flagged():
    class Huge(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = tiny_model()

        def forward(self, x):
            return self.model(x) * 1e4  # CE's input gradient underflows to exactly 0; the margin's does not

    assert "saturated-softmax" in default_flags(Huge().eval())


def test_unadapted_layers_are_named_from_the_modules_alone():
    rounding = BitDepthReduction(bits=2).wrap(tiny_model())
    said = unadapted_layers(rounding, PGD(eps=0.1))
    assert len(said) == 1 and "BitDepth" in said[0] and "bpda=true" in said[0]
    assert unadapted_layers(rounding, PGD(eps=0.1, bpda=True)) == []
    assert unadapted_layers(rounding, Square(eps=0.1)) == []  # takes no gradient: nothing to adapt
    noisy = GaussianNoise(sigma=0.1).wrap(tiny_model())
    assert "eot=16" in unadapted_layers(noisy, PGD(eps=0.1))[0] and unadapted_layers(noisy, PGD(eps=0.1, eot=4)) == []
    assert unadapted_layers(tiny_model(), PGD(eps=0.1)) == []


@pytest.mark.parametrize("value, level", [(True, "full"), (False, "none"), (None, "none"), ("default", "default")])
def test_check_levels(value, level):
    assert check_level(value) == level
    with pytest.raises(ConfigError, match="none, default, full"):
        check_level("some")


def invoke(*args: str):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    trained = invoke(
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
        path,
    )
    assert trained.exit_code == 0, trained.output
    return path


EVAL = ["evaluate", "--model", "lenet5", "--dataset", "synthetic", "--n-samples", "32", "--steps", "5"]


def test_evaluate_warns_above_the_table_and_the_record_carries_the_flags(tiny, tmp_path):
    out = tmp_path / "r.json"
    result = invoke(*EVAL, "--checkpoint", tiny, "--defense", "bit-depth", "--output", out)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "WARNING" in text and "bpda=true" in text and text.index("WARNING") < text.index("robust acc")
    assert "⚑ zero-gradients" in text
    extra = json.loads(json.loads(out.read_text())[0]["extra"])
    print(text)
    assert "zero-gradients" in extra["checks"] and extra["check_details"]["level"] == "default"
    assert extra["check_details"]["flags"] and extra["unadapted_layers"]
    adapted = invoke(*EVAL, "--checkpoint", tiny, "--defense", "bit-depth", "-o", "bpda=true")
    assert adapted.exit_code == 0 and "WARNING" not in adapted.output and "no flags" in adapted.output


def test_no_checks_turns_them_off_and_with_checks_is_refused_before_any_work(tiny, tmp_path):
    quiet = invoke(
        *EVAL, "--checkpoint", tiny, "--defense", "bit-depth", "--no-checks", "--output", tmp_path / "q.json"
    )
    assert quiet.exit_code == 0 and "⚑" not in quiet.output
    assert "checks" not in json.loads(json.loads((tmp_path / "q.json").read_text())[0]["extra"])
    both = invoke(*EVAL, "--checkpoint", tiny, "--checks", "--no-checks", "--output", tmp_path / "never.json")
    assert both.exit_code != 0 and both.output.count("\n") == 1 and "--no-checks" in both.output
    assert not (tmp_path / "never.json").exists()


def test_the_leaderboard_marks_flagged_figures_and_keeps_them(tiny, tmp_path):
    """Plain PGD on the bit-depth entry is marked; PGD with BPDA and the worst case (which BPDA keeps honest) are not."""
    suite = {
        "name": "marks",
        "dataset": "synthetic",
        "n_samples": 32,
        "seed": 0,
        "batch_size": 32,
        "models": [
            {"model": "lenet5", "checkpoint": str(tiny)},
            {
                "model": "lenet5",
                "checkpoint": str(tiny),
                "defense": "bit-depth",
                "label": "squeezed",
                "defense_settings": {"bits": 2},
            },
        ],
        "attacks": [
            {"attack": "pgd", "norm": "linf", "eps": 0.1, "settings": {"steps": 5}},
            {"attack": "pgd", "name": "pgd-bpda", "norm": "linf", "eps": 0.1, "settings": {"steps": 5, "bpda": True}},
        ],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    run_suite(load_suite(tmp_path / "s.yaml"), tmp_path / "r.sqlite", device=torch.device("cpu"), progress=False)
    cells, checks = read_stores([tmp_path / "r.sqlite"]), read_stores([tmp_path / "r.sqlite"], "checks")
    assert len(checks) == 4  # per entry: plain and BPDA
    table = leaderboard(cells, checks).set_index("entry")
    assert table.loc["squeezed", "flagged"] == "pgd linf ε=0.1" and table.loc["lenet5", "flagged"] == ""
    assert isinstance(table.loc["squeezed", "pgd linf ε=0.1"], float)  # the figure stays a number
    md = render(leaderboard(cells, checks), "md")
    lp = md.splitlines()[md.splitlines().index("**Lp: each attack's robust accuracy**") :]  # each attack's figures
    row = next(line for line in lp if "squeezed" in line)
    flagged_cell = f"{table.loc['squeezed', 'pgd linf ε=0.1']:.4f} [" + "{} ⚑ |"  # the figure, its interval, the mark
    low, high = table.loc["squeezed", ["pgd linf ε=0.1_low", "pgd linf ε=0.1_high"]]
    assert flagged_cell.replace("{}", f"{low:.3f}, {high:.3f}]") in row and "flagged" not in md.splitlines()[0]
    assert "⚑ the gradient-masking checks flagged" in md
    for fmt in ("html", "latex"):
        assert "flagged this figure" in render(leaderboard(cells, checks), fmt)
    frame = pd.read_csv(__import__("io").StringIO(render(leaderboard(cells, checks), "csv")))
    assert "⚑" not in frame.drop(columns=["flagged", "checks"]).to_csv() and "flagged" in frame


@pytest.mark.slow
@pytest.mark.parametrize("model, defense", [("smallcnn", "none"), ("lenet5", "none"), ("smallcnn", "madry")])
def test_no_false_alarm_on_real_standard_and_madry_models(model, defense):
    """Briefly trained on real Fashion-MNIST (5000 images, one epoch): default PGD raises no flag."""
    from robustkit import evaluate_model
    from robustkit.data import fashion_mnist

    if not fashion_mnist.DEBIAN_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist not installed")
    trained = invoke("train", "--model", model, "--defense", defense, "--epochs", "1", "--n-train", "5000")
    assert trained.exit_code == 0, trained.output
    report = evaluate_model(model, defense=defense, n_samples=200, no_train=True, progress=False)
    assert report.checks is not None and report.checks.ok, [f.line() for f in report.checks.flags]


def test_gradient_free_members_are_declared_by_the_attack():
    from attacks import AutoAttack, Ensemble

    assert Ensemble(eps=0.1).gradient_free_members() == ("square",) == AutoAttack(eps=0.1).gradient_free_members()
    assert AutoAttack(eps=10.0, norm="l1").gradient_free_members() == (
        "square",
    )  # the official L1 version ends with Square-L1
    assert AutoAttack(eps=0.1, version="rand").gradient_free_members() == ()  # APGD-CE and APGD-DLR only
    assert PGD(eps=0.1).gradient_free_members() == () and Square(eps=0.1).gradient_free_members() == ("square",)


def test_a_gradient_free_member_turns_the_layer_warning_into_a_note():
    from attacks import AutoAttack, Ensemble

    rounding = BitDepthReduction(bits=2).wrap(tiny_model())
    assert unadapted_layers(rounding, Ensemble(eps=0.1)) == []
    [note] = bounded_layers(rounding, Ensemble(eps=0.1))
    assert "square" in note and "-o bpda=true may still lower it" in note
    assert bounded_layers(rounding, Ensemble(eps=0.1, bpda=True)) == [] == bounded_layers(rounding, PGD(eps=0.1))
    assert "a gradient attack with -o bpda=true" in bounded_layers(rounding, Square(eps=0.1))[0]  # Square takes no BPDA
    assert "bpda=true" in unadapted_layers(rounding, AutoAttack(eps=0.1, version="rand"))[0]  # no member bounds it
    flags = [Flag("zero-gradients", "", ""), Flag("randomised-forward", "", "")]
    assert answered_flags(flags, Ensemble(eps=0.1)) == (flags[1:], flags[:1])
    assert answered_flags(flags, PGD(eps=0.1)) == (flags, [])


def test_a_run_whose_figure_answers_the_masking_says_so_as_a_note(tiny, tmp_path):
    """The ensemble on bit-depth without BPDA: its Square bounded the figure, so the run prints a note with the
    remedy (BPDA), not the masking alarm, and never suggests itself; PGD on the same model still gets the alarm."""
    out = tmp_path / "e.json"
    ensemble = invoke(
        *EVAL,
        "--checkpoint",
        tiny,
        "--defense",
        "bit-depth",
        "--attack",
        "ensemble",
        "--targets",
        "2",
        "--queries",
        "100",
        "--output",
        out,
    )
    assert ensemble.exit_code == 0, ensemble.output
    text = ensemble.output
    assert "WARNING" not in text and "other routes" not in text and "--attack ensemble" not in text, text
    note = next(line for line in text.splitlines() if line.startswith("note:"))
    assert "square" in note and "bpda=true" in note and text.index("note:") < text.index("robust acc")
    assert "zero-gradients" in text  # the checks did flag: the note says what they saw
    extra = json.loads(json.loads(out.read_text())[0]["extra"])
    assert extra["bounded_layers"] and "unadapted_layers" not in extra and "zero-gradients" in extra["checks"]
    pgd = invoke(*EVAL, "--checkpoint", tiny, "--defense", "bit-depth")
    assert "WARNING" in pgd.output and "other routes: the ensemble (--attack ensemble)" in pgd.output
    assert "note:" not in pgd.output


def test_a_clean_run_says_no_flags_in_one_line_and_its_figures_under_verbose(tiny, tmp_path):
    out = tmp_path / "c.json"
    plain = invoke(*EVAL, "--checkpoint", tiny, "--output", out)
    assert plain.exit_code == 0, plain.output
    assert "checks: no flags (default set)" in plain.output and "forward_max_difference" not in plain.output
    figures = json.loads(json.loads(out.read_text())[0]["extra"])["check_details"]["figures"]
    verbose = invoke("-v", *EVAL, "--checkpoint", tiny)
    assert verbose.exit_code == 0, verbose.output
    logged = next(line for line in verbose.output.splitlines() if "checks' figures" in line)
    assert all(f"{name} {value:.3g}" in logged for name, value in figures.items())
