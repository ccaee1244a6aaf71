"""Published figures a suite names (e.g. RobustBench's), shown beside ours on its leaderboard.

A table is a CSV with one row per (model, threat model, ε): ``model`` as a suite entry names it
(``robustbench:L2/Augustin2020Adversarial``), ``norm``, ``eps`` (``8/255`` allowed), ``clean_accuracy``
and ``autoattack_accuracy`` as floats in [0, 1], and ``source`` (where the figures come from). It
matches the entries of that model without a defense of ours: the published figures are the bare
model's. Any problem is one line naming the file, the row and the column.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from robustkit.errors import ConfigError

COLUMNS = ("model", "norm", "eps", "clean_accuracy", "autoattack_accuracy", "source")
CLEAN, SOURCE, AA = "published clean", "published source", "published-AA"  # AA columns: "published-AA linf ε=0.03137"


def read_published(path: str | Path) -> pd.DataFrame:
    """The table at ``path``, validated: one row per (model, norm, ε), accuracies as floats in [0, 1]."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = tuple(reader.fieldnames or ())
            if sorted(header) != sorted(COLUMNS):
                got = ", ".join(header) or "none"
                raise ConfigError(f"published table {path}: columns must be {', '.join(COLUMNS)}, got {got}")
            rows = [_row(raw, path, number) for number, raw in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"published table {path}: cannot be read ({err})") from None
    if not rows:
        raise ConfigError(f"published table {path}: holds no rows")
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    twice = table.duplicated(["model", "norm", "eps"])
    if twice.any():
        first = table[twice].iloc[0]
        what = f"{first['model']} {first['norm']} ε={first['eps']:.4g}"
        raise ConfigError(f"published table {path}: {what} appears twice")
    return table


def _row(raw: dict, path: Path, number: int) -> dict:
    from robustkit.threats import (  # here: a leaderboard without published figures needs no torch
        parse_eps,
        threat_class,
    )

    def problem(column: str, what: str) -> ConfigError:
        return ConfigError(f"published table {path}, line {number}, {column}: {what}, got {raw.get(column)!r}")

    if None in raw or any(raw.get(c) is None for c in COLUMNS):
        raise ConfigError(f"published table {path}, line {number}: needs exactly {len(COLUMNS)} fields")
    text = {c: raw[c].strip() for c in COLUMNS}
    for column in ("model", "source"):
        if not text[column]:
            raise problem(column, "must not be empty")
    try:
        norm = threat_class(text["norm"]).name
        eps = parse_eps(text["eps"], "eps")
    except ConfigError as err:
        raise ConfigError(f"published table {path}, line {number}: {err}") from None
    figures = {}
    for column in ("clean_accuracy", "autoattack_accuracy"):
        try:
            value = float(text[column])
        except ValueError:
            raise problem(column, "must be a number in [0, 1]") from None
        if not 0.0 <= value <= 1.0:  # not math.isnan either: NaN fails both comparisons
            raise problem(column, "must be a fraction in [0, 1] (RobustBench's 59.53 % is 0.5953)")
        figures[column] = value
    return {"model": text["model"], "norm": norm, "eps": eps, **figures, "source": text["source"]}


def add_published(table: pd.DataFrame, published: pd.DataFrame | None) -> pd.DataFrame:
    """``table`` (indexed by entry, with ``model``, ``defense`` and ``worst <norm> ε=<eps>`` columns) with
    the published clean accuracy, the published AutoAttack accuracy at each (norm, ε) it was evaluated
    at where one is published, and the figures' source; empty for entries the table does not match."""
    if published is None or published.empty:
        return table
    table = table.copy()
    matches = {}  # entry → its published rows: same model, no defense of ours
    for entry, model, defense in zip(table.index, table["model"], table["defense"].fillna("none"), strict=True):
        rows = published[published["model"] == model]
        if defense == "none" and len(rows):
            matches[entry] = rows
    table[CLEAN] = pd.Series({e: rows["clean_accuracy"].iloc[0] for e, rows in matches.items()}, dtype=float)
    sources = {e: "; ".join(dict.fromkeys(rows["source"])) for e, rows in matches.items()}
    table[SOURCE] = pd.Series(sources, dtype=object).reindex(table.index)
    for column in [c for c in table.columns if c.startswith("worst ")]:
        _, norm, eps = column.split(" ")
        value = float(eps.removeprefix("ε="))
        figures = {e: v for e, rows in matches.items() if (v := _at(rows, norm, value)) is not None}
        if figures:  # a column only where some entry has a published figure
            table[f"{AA} {norm} {eps}"] = pd.Series(figures, dtype=float)
    return table


def _at(rows: pd.DataFrame, norm: str, eps: float) -> float | None:
    """The published AutoAttack accuracy at (norm, ε); ε as the leaderboard shows it (4 significant digits)."""
    for row in rows.itertuples():
        if row.norm == norm and math.isclose(float(f"{row.eps:.4g}"), eps, rel_tol=1e-9):
            return row.autoattack_accuracy
    return None
