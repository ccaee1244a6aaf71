"""Every accuracy a record stores or the CLI prints carries its 95 % interval, from the counts, and is the
exact fraction count / n (issue 33, items 1 and 12): checked against counts recomputed from the record's
own per-sample bits, and against rows an older robustkit wrote."""

from __future__ import annotations

import base64
import json
import re
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from robustkit.cli import main
from robustkit.errors import ConfigError
from robustkit.results.intervals import PROPORTIONS, proportion_interval, row_interval
from robustkit.results.records import COLUMNS, check_outputs
from robustkit.results.store import ResultStore, read_stores

N = 45  # a count over 45 is a binary fraction only at 0 and 45, so a float32 mean differs from count / n
NEW = [f"{p}_{end}" for p in PROPORTIONS for end in ("low", "high")]  # the columns this change added


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """One `robustkit evaluate` of a briefly trained lenet5 written to JSON, CSV and SQLite: (output, folder)."""
    folder = tmp_path_factory.mktemp("intervals")
    trained = run(
        "train",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--precision",
        "fp32",
        "--out",
        str(folder / "tiny.safetensors"),
    )
    assert trained.exit_code == 0, trained.output
    result = run(
        "evaluate",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(folder / "tiny.safetensors"),
        "--n-samples",
        str(N),
        "--eps",
        "24/255",
        "--steps",
        "3",
        "--no-checks",
        *[a for suffix in ("json", "csv", "sqlite") for a in ("--output", str(folder / f"r.{suffix}"))],
    )
    assert result.exit_code == 0, result.output
    return result.output, folder


def _bits(text: str) -> np.ndarray:
    """A JSON record's per-sample outcome (base64 of packed bits) as N booleans."""
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:N].astype(bool)


def _counts(record: dict) -> dict[str, tuple[int, int]]:
    """Each proportion's (count, out of), recounted from the record's bits: success is broken among the correct."""
    clean, robust = _bits(record["clean_correct"]), _bits(record["robust"])
    return {
        "clean_accuracy": (int(clean.sum()), N),
        "robust_accuracy": (int(robust.sum()), N),
        "attack_success_rate": (int((clean & ~robust).sum()), int(clean.sum())),
    }


def test_the_record_holds_each_figures_interval_from_its_counts_in_every_output(evaluated):
    _, folder = evaluated
    record = json.loads((folder / "r.json").read_text())[0]
    counts = _counts(record)
    assert 0 < counts["robust_accuracy"][0] < counts["clean_accuracy"][0] < N  # every figure is a real proportion
    for figure, (count, out_of) in counts.items():
        expected = proportion_interval(count, out_of)
        assert (record[f"{figure}_low"], record[f"{figure}_high"]) == (expected.low, expected.high), figure
        assert expected.low < record[figure] < expected.high
    csv, store = pd.read_csv(folder / "r.csv").iloc[0], read_stores([folder / "r.sqlite"]).iloc[0]
    for column in [*PROPORTIONS, *NEW]:
        assert csv[column] == store[column] == record[column], column  # one row, whichever file holds it


def test_accuracies_are_the_exact_fraction_not_a_float32_mean(evaluated):
    _, folder = evaluated
    record = json.loads((folder / "r.json").read_text())[0]
    bits = {"clean_accuracy": _bits(record["clean_correct"]), "robust_accuracy": _bits(record["robust"])}
    for figure, mask in bits.items():
        float32_mean = torch.from_numpy(mask).float().mean().item()
        assert float32_mean != int(mask.sum()) / N  # the run is one where the old figure was off
        assert record[figure] == int(mask.sum()) / N  # exactly, not approximately
    attacked = int(bits["clean_accuracy"].sum())
    assert record["attack_success_rate"] == (attacked - int(bits["robust_accuracy"].sum())) / attacked
    assert pd.read_csv(folder / "r.csv")["clean_accuracy"].iloc[0] == int(bits["clean_accuracy"].sum()) / N


def test_the_table_prints_each_figure_with_its_interval(evaluated):
    output, folder = evaluated
    record = json.loads((folder / "r.json").read_text())[0]
    lines = output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:2] == ["model", "attack"])
    header, row = re.split(r"\s{2,}", lines[at]), re.split(r"\s{2,}", lines[at + 1])
    shown = dict(zip(header, row, strict=True))
    for column, (count, out_of) in zip(("clean acc", "robust acc", "success"), _counts(record).values(), strict=True):
        assert shown[f"{column} [95 % CI]"] == f"{count / out_of:.4f} {proportion_interval(count, out_of).text()}"


def test_an_older_csv_or_json_is_refused_in_one_line_that_says_why(tmp_path):
    old = [c for c in COLUMNS if c not in NEW]
    (tmp_path / "old.csv").write_text(",".join(old) + "\n" + ",".join("1" for _ in old) + "\n")
    (tmp_path / "old.json").write_text(json.dumps([dict.fromkeys(old, 1)]))
    for name in ("old.csv", "old.json"):
        with pytest.raises(ConfigError) as refused:
            check_outputs([tmp_path / name])
        message = str(refused.value)
        assert (
            "\n" not in message and name in message and "older robustkit" in message and "clean_accuracy_low" in message
        )
        assert ".sqlite" in message  # where the record can go instead


def test_an_older_store_is_read_as_it_is_gains_the_columns_when_written_and_its_rows_get_their_fractions_interval(
    tmp_path,
):
    old = [c for c in COLUMNS if c not in NEW]
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE cells ({', '.join(old)})")
        db.execute(
            "INSERT INTO cells (key, n, clean_accuracy, robust_accuracy, attack_success_rate) VALUES "
            "('a', 300, 275 / 300.0, 8 / 300.0, 267 / 275.0), ('b', 4, NULL, 0.75, 0.25)"
        )
    before = path.read_bytes()
    read = read_stores([path])  # what a leaderboard does: the file stays as it was (a published store too)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["old.sqlite"]
    assert read.columns.tolist() == COLUMNS and read[NEW].isna().all().all()
    with ResultStore(path) as store:  # opened to write: it gains the columns, null in its older rows
        rows = store.frame().set_index("key")
    with sqlite3.connect(path) as db:
        have = [row[1] for row in db.execute("PRAGMA table_info(cells)")]
    assert set(NEW) <= set(have) and rows[NEW].isna().all().all()
    plain = rows.loc["a"].to_dict()
    assert row_interval(plain, "clean_accuracy") == proportion_interval(275, 300)
    assert row_interval(plain, "robust_accuracy") == proportion_interval(8, 300)
    assert row_interval(plain, "attack_success_rate") == proportion_interval(267, 275)  # out of the attacked
    fooling = rows.loc["b"].to_dict()  # no clean images: the rate is out of every class sought
    assert row_interval(fooling, "attack_success_rate") == proportion_interval(1, 4)
    assert row_interval(fooling, "clean_accuracy").text() == ""


def test_the_python_report_gives_each_figures_interval_as_its_record_holds_it():
    from attack_fixtures import DATA, tiny_model

    from robustkit import evaluate_model

    report = evaluate_model(tiny_model(), DATA, "fgsm", eps=0.1, n_samples=N, checks="none", progress=False)
    clean, robust = report.outcome.clean_correct, report.outcome.robust
    recounted = {
        "clean_accuracy": (int(clean.sum()), N),
        "robust_accuracy": (int(robust.sum()), N),
        "attack_success_rate": (int((clean & ~robust).sum()), int(clean.sum())),
    }
    for figure, count in recounted.items():
        assert report.interval(figure) == proportion_interval(*count)
        assert (report.record[f"{figure}_low"], report.record[f"{figure}_high"]) == (
            report.interval(figure).low,
            report.interval(figure).high,
        )
    with pytest.raises(ConfigError, match="no interval for 'median_norm'"):
        report.interval("median_norm")
