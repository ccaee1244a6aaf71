"""The leaderboard's common-corruption group: per entry the mean corruption accuracy (with its bootstrap
interval) and mCE against the undefended entry of the same architecture; the per-corruption table
(folded on the HTML page) and its plot. Read from the store's ``corruptions`` rows alone (no torch)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from robustkit.corruptions.report import CorruptionReport
from robustkit.results.figure_file import save_figure
from robustkit.results.intervals import Interval

MEAN = "mean_corruption_accuracy"
MCE = "mCE"
COLUMNS = (MEAN, MCE)  # the board's corruption group
HEADS = {MEAN: "corruptions mean", MCE: "mCE"}
GROUP = "common corruptions"


def latest_runs(runs: pd.DataFrame | None) -> dict[str, CorruptionReport]:
    """Each entry's latest corruption report (a re-run with other weights or settings replaces the older)."""
    if runs is None or runs.empty:
        return {}
    ordered = runs.sort_values("created", kind="stable")
    return {row.entry: CorruptionReport.from_dict(json.loads(row.details)) for row in ordered.itertuples()}


def _baselines(runs: pd.DataFrame) -> dict[str, str]:
    """Entry → the undefended entry of the same architecture, where the board holds one."""
    plain = {r.model: r.entry for r in runs.itertuples() if r.defense == "none"}
    return {r.entry: plain[r.model] for r in runs.itertuples() if r.model in plain}


def corruption_columns(
    entries: list[str], runs: pd.DataFrame | None
) -> tuple[pd.DataFrame, dict[str, dict[str, Interval]]]:
    """The group's columns for ``entries`` (NaN where an entry has no run) and the mean's intervals."""
    reports = latest_runs(runs)
    base = _baselines(runs) if reports else {}
    mean, mce, intervals = {}, {}, {}
    for entry, report in reports.items():
        mean[entry], intervals[entry] = report.mean_accuracy, report.mean_interval()
        other = reports.get(base.get(entry, ""))
        same = other is not None and other.names == report.names and other.severities == report.severities
        mce[entry] = report.mce(other) if same and other.n == report.n else np.nan
    columns = pd.DataFrame(
        {MEAN: [mean.get(e, np.nan) for e in entries], MCE: [mce.get(e, np.nan) for e in entries]}, index=entries
    )
    return columns, {MEAN: intervals}


def per_corruption_table(runs: pd.DataFrame | None, order: list[str]) -> pd.DataFrame:
    """Rows (corruption, severity), one column per entry: accuracy with its 95 % interval as text."""
    reports = latest_runs(runs)
    rows: dict[tuple[str, int], dict[str, str]] = {}
    for entry in [e for e in order if e in reports]:
        for row in reports[entry].table():
            cell = f"{row['accuracy']:.4f} {Interval(row['accuracy_low'], row['accuracy_high']).text('.3f')}"
            rows.setdefault((row["corruption"], row["severity"]), {})[entry] = cell
    index = pd.MultiIndex.from_tuples(list(rows), names=["corruption", "severity"])
    return pd.DataFrame(list(rows.values()), index=index).reset_index()


def corruption_html(runs: pd.DataFrame | None, order: list[str], svg: str = "") -> str:
    """The folded per-corruption table and plot for the page ("" without corruption runs)."""
    table = per_corruption_table(runs, order)
    if table.empty:
        return ""
    reports = latest_runs(runs)
    left = sorted({k for r in reports.values() for k in r.unavailable})
    note = f" Not evaluated: {', '.join(left)} (the reference's image files are not available)." if left else ""
    summary = (
        "Common corruptions: accuracy per corruption and severity, in brackets the 95 % interval "
        f"(Clopper–Pearson){html.escape(note)}"
    )
    body = table.to_html(index=False, classes="detail", border=0, escape=True)
    plot = f"<figure>{svg[svg.find('<svg') :]}</figure>" if "<svg" in svg else ""
    return f"\n<details><summary>{summary}</summary>\n{body}\n{plot}</details>\n"


def plot_corruptions(runs: pd.DataFrame | None, path: str | Path, order: list[str], title: str = "") -> Path | None:
    """Each entry's accuracy per corruption (its severities' mean), one line per entry; None without runs."""
    reports = latest_runs(runs)
    if not reports:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(n for r in reports.values() for n in r.names))
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(names) + 2), 4))
    for entry in [e for e in order if e in reports]:
        per = reports[entry].per_corruption()
        ax.plot(range(len(names)), [per.get(n, np.nan) for n in names], marker="o", label=entry)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (mean over severities)")
    ax.set_title(title or "common corruptions")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
