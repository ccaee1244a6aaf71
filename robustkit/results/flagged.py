"""Which leaderboard figures the gradient-masking checks flag, and the mark that says so.

A figure stays in the table; beside it the people-facing formats (Markdown, HTML, LaTeX) put ``MARK``
and a legend under the table, while CSV and JSON carry the ``flagged`` column (the flagged columns'
names), so no number ever holds a glyph. An attack's figure is flagged when the check run at its
(entry, norm, ε), done the way the attack differentiates the model (BPDA, EOT), raised a flag; the
worst case when every check run there did (an adapted attack that passed keeps it honest).
"""

from __future__ import annotations

import json

import pandas as pd

from robustkit.adaptation import Adaptation

MARK = "⚑"
COLUMN = "flagged"  # per entry: the flagged figure columns, "; "-separated ("" when none)
LEGEND = (
    f"{MARK} the gradient-masking checks flagged this figure (see the checks column): it is likely too high; "
    "try the attack with -o bpda=true / -o eot=16, or trust the ensemble's figure"
)


def flagged_columns(cells: pd.DataFrame, checks: pd.DataFrame, entries: pd.Index, name_of) -> pd.Series:
    """Per entry, the figure columns to mark; ``name_of(attack)`` is the attack's column name stem."""
    verdicts: dict[tuple, list[bool]] = {}  # (entry, norm, ε) → [(adaptation, ok)]
    runs: dict[tuple, bool] = {}
    for row in checks.itertuples():
        details = json.loads(row.details) if isinstance(row.details, str) else (row.details or {})
        adaptation = Adaptation.of(details.get("adaptation") or {})
        ok = row.summary == "ok"
        runs[(row.entry, row.norm, float(row.eps), adaptation)] = ok
        verdicts.setdefault((row.entry, row.norm, float(row.eps)), []).append(ok)
    marked: dict[str, list[str]] = {e: [] for e in entries}
    for (entry, norm, eps), oks in verdicts.items():
        if entry in marked and not any(oks):
            marked[entry].append(f"worst {norm} ε={eps:.4g}")
    for row in cells.itertuples():
        settings = json.loads(row.settings) if isinstance(row.settings, str) and row.settings else {}
        ok = runs.get((row.entry, row.norm, float(row.eps), Adaptation.of(settings)))
        if ok is False and row.entry in marked:
            marked[row.entry].append(f"{name_of(row.attack)} {row.norm} ε={row.eps:.4g}")
    return pd.Series({e: "; ".join(dict.fromkeys(c)) for e, c in marked.items()}).reindex(entries)


def with_marks(table: pd.DataFrame, text) -> tuple[pd.DataFrame, set[str], str]:
    """The table for reading: each flagged figure as ``text(value) + " ⚑"`` (its column turned to text), the
    ``flagged`` column dropped; also the columns that were numeric (for alignment) and the legend ("" if
    nothing is marked)."""
    numeric = {c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])}
    if COLUMN not in table:
        return table, numeric, ""
    shown = table.drop(columns=[COLUMN])
    marks = [
        (i, c)
        for i, cols in zip(shown.index, table[COLUMN], strict=True)
        for c in (cols or "").split("; ")
        if c in shown
    ]
    for column in dict.fromkeys(c for _, c in marks):
        shown[column] = shown[column].map(text).astype(object)
    for i, column in marks:
        shown.at[i, column] = f"{shown.at[i, column]} {MARK}"
    return shown, numeric - {COLUMN}, LEGEND if marks else ""
