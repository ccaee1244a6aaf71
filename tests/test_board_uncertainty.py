"""Issue 33: the leaderboard's intervals and paired tests, the headline it ranks by, plots that join only
measured points, cards without unset settings, and the per-class view; on hand-made rows."""

from __future__ import annotations

import io
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from scipy.stats import binomtest

from robustkit.cli import main
from robustkit.errors import ConfigError
from robustkit.results.leaderboard import curves_figure, entry_cards, leaderboard, per_class_html, render
from robustkit.results.per_class import per_class, per_class_table
from robustkit.suites.spec import load_suite

N = 200


def _cell(entry: str, attack: str, norm: str, eps: float, robust: np.ndarray, clean: np.ndarray, **extra) -> dict:
    """One store row as the runner writes it, with its per-sample bits."""
    return {
        "key": f"{entry}-{attack}-{norm}-{eps}",
        "suite": "s",
        "dataset": "synthetic",
        "entry": entry,
        "model": entry,
        "defense": "none",
        "checkpoint_sha256": f"sha-{entry}",
        "attack": attack,
        "norm": norm,
        "eps": eps,
        "settings": "{}",
        "n_samples": len(robust),
        "sample_seed": 0,
        "n": len(robust),
        "clean_accuracy": float(clean.mean()),
        "robust_accuracy": float(robust.mean()),
        "seconds": 1.0,
        "extra": json.dumps(extra),
        "robustkit_version": "0",
        "torch_version": "0",
        "created": "2026-01-01",
        "clean_correct": np.packbits(clean).tobytes(),
        "robust": np.packbits(robust).tobytes(),
        "source": None,
        "training": "",
        "examples": None,
    }


def _bits(*ones: int | range, n: int = N) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    for part in ones:
        out[part if isinstance(part, range) else range(part)] = True
    return out


def _exact(k: int, n: int) -> tuple[float, float]:
    """Clopper–Pearson from SciPy's binomial test: the reference the table's intervals are checked against."""
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return ci.low, ci.high


def test_a_worst_case_interval_is_clopper_pearson_on_the_and_of_the_attacks_bits():
    rng = np.random.default_rng(0)
    clean = rng.random(N) < 0.9
    fgsm, pgd = clean & (rng.random(N) < 0.7), clean & (rng.random(N) < 0.6)
    rows = [_cell("a", "fgsm", "linf", 0.1, fgsm, clean), _cell("a", "pgd", "linf", 0.1, pgd, clean)]
    table = leaderboard(pd.DataFrame(rows)).iloc[0]
    both = int(np.sum(fgsm & pgd))  # by hand: robust only where neither attack broke the image
    assert table["worst linf ε=0.1"] == both / N and both < min(fgsm.sum(), pgd.sum())
    low, high = _exact(both, N)
    assert table["worst linf ε=0.1_low"] == pytest.approx(low, abs=1e-6)
    assert table["worst linf ε=0.1_high"] == pytest.approx(high, abs=1e-6)
    assert (table["clean_accuracy_low"], table["clean_accuracy_high"]) == pytest.approx(
        _exact(int(clean.sum()), N), abs=1e-6
    )
    assert (table["pgd linf ε=0.1_low"], table["pgd linf ε=0.1_high"]) == pytest.approx(
        _exact(int(pgd.sum()), N), abs=1e-6
    )

    csv = pd.read_csv(io.StringIO(render(leaderboard(pd.DataFrame(rows)), "csv")))
    assert csv.loc[0, "worst linf ε=0.1_low"] == pytest.approx(low, abs=1e-6)
    markdown = render(leaderboard(pd.DataFrame(rows)), "md")
    assert f"{both / N:.4f} [{low:.3f}, {high:.3f}]" in markdown and "_low" not in markdown
    assert "Clopper–Pearson" in markdown


def test_a_row_without_bits_falls_back_to_its_fraction_and_no_test():
    clean, robust = _bits(180), _bits(90)
    old = {**_cell("a", "pgd", "linf", 0.1, robust, clean), "robust": None, "clean_correct": None}
    other = _cell("b", "pgd", "linf", 0.1, _bits(60), clean)
    table = leaderboard(pd.DataFrame([old, other])).set_index("entry")
    assert (table.at["a", "worst linf ε=0.1_low"], table.at["a", "worst linf ε=0.1_high"]) == pytest.approx(
        _exact(90, N), abs=1e-6
    )
    assert np.isnan(table.at["a", "next_pvalue"])  # no per-image outcomes: no paired test
    assert "| ? |" in render(table.reset_index(), "md")


@pytest.mark.parametrize("discordant, separated", [(3, False), (20, True)])
def test_adjacent_ranks_are_marked_as_mcnemar_says(discordant, separated):
    """B is A with ``discordant`` more images broken: McNemar's p is the two-sided binomial tail at 1/2."""
    clean = _bits(190)
    a = _bits(120)
    b = a.copy()
    b[:discordant] = False
    c = _bits(10)  # far below: separated from B whatever the case
    rows = [_cell(e, "pgd", "linf", 0.1, r, clean) for e, r in (("b", b), ("a", a), ("c", c))]
    table = leaderboard(pd.DataFrame(rows))
    assert list(table["entry"]) == ["a", "b", "c"]
    expected = binomtest(discordant, discordant, 0.5).pvalue
    assert table.loc[0, "next_pvalue"] == pytest.approx(expected, abs=1e-6) and (expected < 0.05) == separated
    assert table.loc[1, "next_pvalue"] < 1e-6 and np.isnan(table.loc[2, "next_pvalue"])
    lines = render(table, "md").splitlines()
    heads = [h.strip() for h in lines[0].strip("|").split("|")]
    marks = [[c.strip() for c in line.strip("|").split("|")][heads.index("≈ next")] for line in lines[2:5]]
    assert marks == ["" if separated else "≈", "", ""]


def test_the_headline_ranks_where_the_old_mean_would_order_otherwise():
    """A holds better at L∞ (the headline by default), B at L2 and under a patch: the mean of the three
    worst cases put B first (0.6 vs 0.3); the board ranks by the stated headline, ties by clean accuracy."""
    clean = _bits(190)
    figures = {
        "a": {("linf", 0.1): 100, ("l2", 1.0): 40, ("patch", 4.0): 40},
        "b": {("linf", 0.1): 60, ("l2", 1.0): 180, ("patch", 4.0): 120},
        "c": {("linf", 0.1): 100, ("l2", 1.0): 0, ("patch", 4.0): 0},
    }  # ties with A at L∞, lower clean
    rows = [
        _cell(e, "pgd" if n != "patch" else "patch", n, eps, _bits(k), clean if e != "c" else _bits(150))
        for e, budgets in figures.items()
        for (n, eps), k in budgets.items()
    ]
    table = leaderboard(pd.DataFrame(rows))
    means = {e: np.mean(list(b.values())) for e, b in figures.items()}
    assert max(means, key=means.get) == "b"  # what the old ranking would have put first
    assert list(table["entry"]) == ["a", "c", "b"] and "headline linf ε=0.1" in table
    named = leaderboard(pd.DataFrame(rows), headline=("l2", 1.0))
    assert list(named["entry"]) == ["b", "a", "c"] and "headline l2 ε=1" in named
    assert "ranked by the headline, the worst case at l2 ε=1" in render(named, "md")
    with pytest.raises(ConfigError, match=r"^headline linf ε=0.3 was not evaluated \(the board has: "):
        leaderboard(pd.DataFrame(rows), headline=("linf", 0.3))


def test_a_suite_names_its_headline_and_an_unevaluated_one_is_one_line(tmp_path):
    suite = {
        "dataset": "synthetic",
        "models": [{"model": "lenet5"}],
        "headline": {"norm": "linf", "eps": "1/10"},
        "attacks": [{"attack": "fgsm", "norm": "linf", "eps": [0.1, 0.2]}],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    assert load_suite(tmp_path / "s.yaml").headline == ("linf", 0.1)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**suite, "headline": {"norm": "l2", "eps": 0.1}}))
    with pytest.raises(
        ConfigError,
        match=r"headline: l2 ε=0.1 is not a budget the suite's attacks evaluate \(they have: linf 0.1, linf 0.2\)",
    ):
        load_suite(tmp_path / "s.yaml")


def test_the_leaderboard_command_takes_a_headline(tmp_path):
    from robustkit.results.store import ResultStore

    clean = _bits(190)
    with ResultStore(tmp_path / "r.sqlite") as store:
        for entry, (linf, l2) in {"a": (100, 10), "b": (50, 150)}.items():
            store.put(_cell(entry, "pgd", "linf", 0.1, _bits(linf), clean))
            store.put(_cell(entry, "pgd", "l2", 1.0, _bits(l2), clean))

    def ranked(*args: str) -> list[str]:
        done = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "r.sqlite"), "--format", "csv", *args])
        assert done.exit_code == 0, done.output
        return list(pd.read_csv(io.StringIO(done.output))["entry"])

    assert ranked() == ["a", "b"] and ranked("--headline", "l2:1") == ["b", "a"]
    bad = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "r.sqlite"), "--headline", "l2"])
    assert bad.exit_code == 1 and "--headline takes NORM:EPS" in bad.output


def _drawn_lines(ax) -> list:
    """The Line2D objects that join two or more points with a visible line."""
    return [line for line in ax.lines if len(line.get_xdata()) > 1 and line.get_linestyle() not in ("None", "none", "")]


def test_a_one_budget_family_shows_two_points_and_no_line_with_error_bars():
    import matplotlib.pyplot as plt

    clean = _bits(180)
    rows = [
        _cell("a", "pgd", "linf", 0.1, _bits(90), clean),
        _cell("a", "pgd", "linf", 0.2, _bits(30), clean),
        _cell("a", "patch", "patch", 6.0, _bits(70), clean),
    ]
    fig = curves_figure(pd.DataFrame(rows))
    by_norm = {ax.get_title().split("\n")[0]: ax for ax in fig.axes}
    try:
        assert (
            len(_drawn_lines(by_norm["linf"])) == 1
        )  # two budgets measured: the curve joins them (the check can fail)
        patch = by_norm["patch"]
        assert _drawn_lines(patch) == []  # one budget: the clean point and that one point, no line between them
        points = [line for line in patch.lines if line.get_marker() == "o"]  # the data, not the error bars' caps
        assert [list(p.get_xdata()) for p in points] == [[0.0, 6.0]] and list(points[0].get_ydata()) == [0.9, 0.35]
        bars = [c for c in patch.collections if len(c.get_segments()) == 2]  # one vertical error bar per point
        low, high = _exact(70, N)
        assert bars and np.allclose(bars[0].get_segments()[1][:, 1], [low, high], atol=1e-6)
        assert "one budget" in patch.get_title() and "one budget" not in by_norm["linf"].get_title()
    finally:
        plt.close(fig)


def test_entry_cards_leave_out_settings_that_are_none():
    training = json.dumps({"architecture": "lenet5", "defense_settings": {"eps": 0.1, "steps": 3, "step_size": None}})
    row = {**_cell("a", "pgd", "linf", 0.1, _bits(90), _bits(180)), "defense": "madry", "training": training}
    cards = entry_cards(pd.DataFrame([row]), ["a"])
    assert "madry (eps=0.1, steps=3)" in cards and "=None" not in cards


def test_per_class_figures_match_a_count_by_hand():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 0, 2, 1])
    clean = np.array([1, 1, 0, 1, 0, 1, 1, 0, 1, 1], dtype=bool)
    robust = np.array([1, 0, 0, 0, 0, 1, 1, 0, 0, 1], dtype=bool)
    figures = per_class(labels, clean, robust, ["cat", "dog", "eel"])
    assert figures == {
        "cat": {"n": 4, "clean": 3 / 4, "robust": 2 / 4},
        "dog": {"n": 3, "clean": 2 / 3, "robust": 1 / 3},
        "eel": {"n": 3, "clean": 2 / 3, "robust": 1 / 3},
    }
    table = per_class_table(figures).set_index("class")
    assert (table.at["cat", "robust_low"], table.at["cat", "robust_high"]) == pytest.approx(_exact(2, 4), abs=1e-9)


def test_evaluate_per_class_prints_and_records_the_figures_per_class(tmp_path):
    """The record's per-class figures against an independent count: the subset's labels and a forward pass."""
    import torch

    from robustkit.data import get_dataset
    from robustkit.models import get_model

    data = get_dataset("synthetic")
    model = get_model("lenet5", data.info, seed=1)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    out = tmp_path / "r.json"
    done = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--model",
            "lenet5",
            "--weights",
            str(tmp_path / "w.pt"),
            "--dataset",
            "synthetic",
            "--attack",
            "fgsm",
            "--eps",
            "0.1",
            "--n-samples",
            "40",
            "--no-checks",
            "--per-class",
            "--output",
            str(out),
        ],
    )
    assert done.exit_code == 0, done.output
    record = json.loads(out.read_text())
    record = record[-1] if isinstance(record, list) else record
    extra = (
        json.loads(record["extra"]) if isinstance(record["extra"], str) else record["extra"]
    )  # JSON holds it as text
    figures = extra["per_class"]
    subset = data.test.subset(40, seed=0).load()
    with torch.no_grad():
        correct = (model.eval()(subset.images).argmax(1) == subset.labels).numpy()
    names = data.info.class_names
    counts = Counter(subset.labels.tolist())
    assert {name: f["n"] for name, f in figures.items()} == {names[c]: k for c, k in counts.items()}
    for c, k in counts.items():
        assert figures[names[c]]["clean"] == pytest.approx(correct[subset.labels.numpy() == c].sum() / k)
        assert figures[names[c]]["robust"] <= figures[names[c]]["clean"]
    assert sum(f["n"] * f["robust"] for f in figures.values()) == pytest.approx(40 * record["robust_accuracy"])
    printed = done.output.split("per class")[1].splitlines()
    for name, f in figures.items():
        line = next(line for line in printed if line.startswith(name + " "))
        assert f"{f['clean']:.4f} [" in line and str(f["n"]) in line


def test_the_page_folds_a_per_class_table_at_the_headline():
    clean = _bits(180)
    extra = {
        "per_class": {"cat": {"n": 100, "clean": 0.9, "robust": 0.5}, "dog": {"n": 100, "clean": 0.9, "robust": 0.4}}
    }
    rows = [_cell("a", "pgd", "linf", 0.1, _bits(90), clean, **extra), _cell("a", "pgd", "linf", 0.2, _bits(9), clean)]
    frame = pd.DataFrame(rows)
    page = per_class_html(frame, leaderboard(frame))
    low, high = _exact(40, 100)
    assert page.startswith("<details><summary>Per class at the headline budget (linf ε=0.1)")
    assert f"0.4000 [{low:.3f}, {high:.3f}]" in page and "<td>dog</td>" in page
