"""Clean and robust accuracy per class: robustness is often very uneven across classes (Xu et al., ICML
2021, "To be robust or to be fair"), and one figure over all classes hides it.

A cell's record keeps ``extra["per_class"]`` = {class name: {n, clean, robust}} (accuracies as floats
in [0, 1], exact count / n), computed from its per-sample outcomes and labels; ``per_class_table``
turns it into rows with 95 % intervals for the CLI and the leaderboard page. NumPy and pandas only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from robustkit.results.intervals import fraction_interval

FIGURES = ("clean", "robust")


def per_class(
    labels: np.ndarray, clean_correct: np.ndarray, robust: np.ndarray, names: Sequence[str]
) -> dict[str, dict]:
    """{class name: {"n", "clean", "robust"}} over the classes present in ``labels`` (per-sample arrays, n each)."""
    labels = np.asarray(labels, dtype=np.int64)
    clean_correct, robust = np.asarray(clean_correct, dtype=bool), np.asarray(robust, dtype=bool)
    if not len(labels) == len(clean_correct) == len(robust):
        raise ValueError(f"per_class: {len(labels)} labels for {len(clean_correct)} and {len(robust)} outcomes")
    shown = {}
    for label in np.unique(labels):
        here = labels == label
        n = int(here.sum())
        name = str(names[label]) if 0 <= label < len(names) else str(label)
        shown[name] = {"n": n, "clean": int(clean_correct[here].sum()) / n, "robust": int(robust[here].sum()) / n}
    return shown


def per_class_table(figures: dict[str, dict]) -> pd.DataFrame:
    """One row per class: ``class``, ``n`` and each figure with ``<figure>_low`` / ``<figure>_high`` (Clopper–Pearson)."""
    rows = []
    for name, counts in figures.items():
        row = {"class": name, "n": int(counts["n"])}
        for figure in FIGURES:
            interval = fraction_interval(counts[figure], counts["n"])
            row.update({figure: counts[figure], f"{figure}_low": interval.low, f"{figure}_high": interval.high})
        rows.append(row)
    columns = ["class", "n", *(f"{f}{s}" for f in FIGURES for s in ("", "_low", "_high"))]
    return pd.DataFrame(rows, columns=columns)
