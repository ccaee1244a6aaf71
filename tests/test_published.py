"""Published figures beside ours: a suite's table, the leaderboard's columns, one-line errors; the RobustBench suites parse."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from robustkit.cli import main
from robustkit.data import DatasetInfo, get_dataset
from robustkit.errors import ConfigError
from robustkit.evaluation.runner import run_suite
from robustkit.models import get_model
from robustkit.results.leaderboard import leaderboard, render
from robustkit.results.published import read_published
from robustkit.results.store import read_stores
from robustkit.suites.spec import load_suite

SUITES = Path(__file__).resolve().parent.parent / "benchmarks" / "suites"
TABLE = """model,norm,eps,clean_accuracy,autoattack_accuracy,source
lenet5,linf,0.1,0.91,0.42,Doe et al. 2020 (https://example.org/doe)
lenet5,l2,0.5,0.91,0.6,Doe et al. 2020
"""


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A tiny suite (given weights: nothing trains) whose table matches lenet5 and not smallcnn, run once."""
    folder = tmp_path_factory.mktemp("published")
    info = get_dataset("synthetic").info
    for name in ("lenet5", "smallcnn"):
        torch.save(get_model(name, info, seed=1).state_dict(), folder / f"{name}.pt")
    (folder / "figures.csv").write_text(TABLE)
    suite = {
        "name": "tiny",
        "dataset": "synthetic",
        "n_samples": 16,
        "batch_size": 16,
        "checks": False,
        "published": "figures.csv",
        "models": [{"model": m, "weights": f"{m}.pt"} for m in ("lenet5", "smallcnn")],
        "attacks": [{"attack": "fgsm", "norm": "linf", "eps": [0.1, 0.2]}],
    }
    (folder / "tiny.yaml").write_text(yaml.safe_dump(suite))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROBUSTKIT_HOME", str(folder / "home"))
        loaded = load_suite(folder / "tiny.yaml")
        run_suite(loaded, folder / "results.sqlite", device=torch.device("cpu"), progress=False, allow_train=False)
    return folder, loaded


def test_suite_names_its_table_relative_to_itself(board):
    folder, suite = board
    assert suite.published == folder / "figures.csv"
    table = read_published(suite.published)
    assert table["eps"].tolist() == [0.1, 0.5] and table["autoattack_accuracy"].tolist() == [0.42, 0.6]


def test_published_columns_beside_ours_and_empty_for_unmatched(board):
    folder, suite = board
    table = leaderboard(read_stores([folder / "results.sqlite"]), published=read_published(suite.published))
    columns = list(table.columns)
    assert columns.index("published clean") == columns.index("clean_accuracy_high") + 1  # beside ours and its interval
    assert "published-AA linf ε=0.1" in columns and "published-AA linf ε=0.2" not in columns  # no figure at 0.2
    assert not any("l2" in c for c in columns if c.startswith("published-AA"))  # not evaluated here: not shown
    assert columns[-1] == "published source"
    rows = table.set_index("entry")
    assert rows.at["lenet5", "published clean"] == 0.91 and rows.at["lenet5", "published-AA linf ε=0.1"] == 0.42
    assert rows.at["lenet5", "published source"].startswith("Doe et al. 2020 (https://example.org/doe)")
    assert pd.isna(rows.at["smallcnn", "published clean"]) and pd.isna(rows.at["smallcnn", "published-AA linf ε=0.1"])
    assert pd.isna(rows.at["smallcnn", "published source"])

    markdown = render(table, "md").splitlines()
    header = [c.strip() for c in markdown[0].strip("|").split("|")]
    for line in markdown[2:4]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        assert cells["published clean"] == ("0.9100" if cells["entry"] == "lenet5" else "")
    html = render(table, "html")
    assert (
        "<th>published clean</th>" in html and "<th>published-AA linf ε=0.1</th>" in html and "example.org/doe" in html
    )
    csv = pd.read_csv(io.StringIO(render(table, "csv"))).set_index("entry")
    assert csv.at["lenet5", "published-AA linf ε=0.1"] == 0.42 and pd.isna(csv.at["smallcnn", "published clean"])


def test_leaderboard_command_and_benchmark_show_the_table(board, tmp_path):
    folder, _ = board
    shown = CliRunner().invoke(
        main,
        ["leaderboard", str(folder / "results.sqlite"), "--format", "csv", "--published", str(folder / "figures.csv")],
    )
    assert shown.exit_code == 0, shown.output
    assert "published clean" in shown.output.splitlines()[0]
    ran = CliRunner().invoke(
        main,
        [
            "benchmark",
            str(folder / "tiny.yaml"),
            "--store",
            str(folder / "results.sqlite"),
            "--no-train",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert ran.exit_code == 0, ran.output
    assert "published-AA linf ε=0.1" in ran.output and "published-AA" in (tmp_path / "out" / "tiny.md").read_text()


@pytest.mark.parametrize(
    "text, message",
    [
        ("model,norm,eps,clean_accuracy,source\nx,linf,0.1,0.9,s\n", "columns must be model, norm, eps"),
        (TABLE.replace("0.42", "42.0"), "line 2, autoattack_accuracy: must be a fraction in [0, 1]"),
        (TABLE.replace("0.42", "n/a"), "line 2, autoattack_accuracy: must be a number"),
        (TABLE.replace("l2,0.5", "l7,0.5"), "line 3: norm: unknown threat model 'l7'"),
        (TABLE.replace(",0.1,", ",8//255,"), "line 2: eps must be a number like 0.1"),
        (TABLE.replace("Doe et al. 2020\n", "\n"), "line 3, source: must not be empty"),
        (TABLE + TABLE.splitlines()[1] + "\n", "lenet5 linf ε=0.1 appears twice"),
        (TABLE.splitlines()[0] + "\n", "holds no rows"),
        (TABLE + "lenet5,linf\n", "line 4: needs exactly 6 fields"),
    ],
)
def test_malformed_table_is_one_clear_line(tmp_path, text, message):
    path = tmp_path / "figures.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_published(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_suite_with_a_malformed_or_missing_table_fails_to_load(tmp_path):
    suite = {
        "dataset": "synthetic",
        "published": "figures.csv",
        "models": [{"model": "lenet5"}],
        "attacks": [{"attack": "fgsm", "eps": 0.1}],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    with pytest.raises(ConfigError, match=r"s\.yaml: published: .*figures\.csv does not exist"):
        load_suite(tmp_path / "s.yaml")
    (tmp_path / "figures.csv").write_text(TABLE.replace("0.42", "42"))
    result = CliRunner().invoke(main, ["benchmark", str(tmp_path / "s.yaml")])
    assert result.exit_code == 1 and "line 2, autoattack_accuracy" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.skipif(
    importlib.util.find_spec("robustbench") is None, reason="the zoo extra (robustbench) is not installed"
)
@pytest.mark.parametrize("name, dataset, n_samples", [("imagenet", "imagenet", 5000), ("cifar10", "cifar10", 10000)])
def test_robustbench_suites_parse_and_their_tables_match_entries(name, dataset, n_samples):
    suite = load_suite(SUITES / f"{name}.yaml")
    assert suite.dataset == dataset and suite.n_samples == n_samples and suite.published is not None
    assert any(a.attack == "ensemble" for a in suite.attacks)
    table = read_published(suite.published)
    models = {e.model for e in suite.models}
    assert set(table["model"]) <= models  # every published row names an entry of the suite
    pairs = {(a.norm, round(e, 6)) for a in suite.attacks for e in a.eps}
    assert {(n, round(e, 6)) for n, e in zip(table["norm"], table["eps"], strict=True)} <= pairs
    from robustkit.models import robustbench_zoo

    info = DatasetInfo(dataset, 2, (3, 32, 32), ("a", "b"), (0.5,) * 3, (0.5,) * 3)  # the zoo is looked up by its name
    for model in models - {"torchvision:resnet50"}:
        robustbench_zoo._zoo(*robustbench_zoo.split_name(model.removeprefix("robustbench:")), info)  # in the zoo
