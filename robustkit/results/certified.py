"""The leaderboard's certified group: randomized smoothing's certified accuracy per radius beside the empirical
figure of the same smoothed classifier, from the store's ``certified`` rows (NumPy and pandas only, no torch).

Columns are named like the board's figures, ``certified l2-smoothed ε=0.5`` and ``smoothadv l2-smoothed ε=0.5``
(the radius in the ε slot), so they form one group of their own; a radius where the certified figure lies
above what the attack left unbroken (``robustkit.certification.empirical.soundness_flags``) is flagged ⚑.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from robustkit.results.flagged import COLUMN as FLAGGED
from robustkit.results.intervals import Interval

NORM = "l2-smoothed"  # the group's name: L2 radii of a smoothed classifier
CERTIFIED, EMPIRICAL = "certified", "smoothadv"
SMOOTHING = "smoothing"  # the settings column
FAMILY_TITLE = (
    "Randomized smoothing, per L2 radius (ε): certified accuracy (Cohen et al.) and the accuracy of the "
    "same smoothed classifier under SmoothAdv (Salman et al.); ⚑ where certified exceeds what SmoothAdv left unbroken"
)


def column(what: str, radius: float) -> str:
    return f"{what} {NORM} ε={radius:.4g}"


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value else value


def latest_per_entry(certified: pd.DataFrame) -> pd.DataFrame:
    """One certification per entry: its newest (a store may hold older settings' runs too)."""
    return certified.sort_values("created", kind="stable").drop_duplicates("entry", keep="last")


def add_certified(
    table: pd.DataFrame, intervals: dict[str, dict[str, Interval]], certified: pd.DataFrame | None
) -> pd.DataFrame:
    """``table`` (indexed by entry) with the certified and empirical columns, their intervals put in
    ``intervals``, the smoothing settings, and flagged radii added to the ``flagged`` column."""
    if certified is None or certified.empty:
        return table
    table = table.copy()
    flagged: dict[str, list[str]] = {}
    for row in latest_per_entry(certified).itertuples():
        if row.entry not in table.index:
            continue
        for what, points in ((CERTIFIED, _json(row.certified) or []), (EMPIRICAL, _json(row.empirical) or [])):
            for point in points:
                name = column(what, point["radius"])
                if name not in table:
                    table[name] = float("nan")
                table.loc[row.entry, name] = point["accuracy"]
                intervals.setdefault(name, {})[row.entry] = Interval(point["low"], point["high"])
        smoothing = _json(row.smoothing)
        if SMOOTHING not in table:
            table[SMOOTHING] = ""
        table.loc[row.entry, SMOOTHING] = ", ".join(f"{k}={v:g}" for k, v in smoothing.items())
        flagged[row.entry] = [column(CERTIFIED, float(f.split(":")[0].split()[1])) for f in _json(row.flags) or []]
    if any(flagged.values()):
        marks = table[FLAGGED] if FLAGGED in table else pd.Series("", index=table.index)
        table[FLAGGED] = ["; ".join(x for x in [marks[e] or "", *flagged.get(e, [])] if x) for e in table.index]
    return table


def plot_certified(certified: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Every entry's certified-accuracy curve (95 % band) and its empirical points, one axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robustkit.certification.curve import correct_radii, draw_certified
    from robustkit.results.figure_file import save_figure

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for row in latest_per_entry(certified).itertuples():
        samples, smoothing = _json(row.samples), _json(row.smoothing)
        radii = correct_radii(samples["radius"], samples["prediction"], samples["label"])
        draw_certified(ax, radii, row.max_radius, f"{row.entry} σ={smoothing['sigma']:g}")
        empirical = _json(row.empirical) or []
        if empirical:
            ax.errorbar(
                [p["radius"] for p in empirical],
                [p["accuracy"] for p in empirical],
                yerr=[[p["accuracy"] - p["low"] for p in empirical], [p["high"] - p["accuracy"] for p in empirical]],
                fmt="o",
                capsize=3,
                color=ax.lines[-1].get_color(),
                label=f"{row.entry} SmoothAdv",
            )
    ax.set(xlabel="L2 radius", ylabel="accuracy", ylim=(0, 1), title=title or "certified (line) and empirical (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
