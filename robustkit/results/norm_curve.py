"""Robust accuracy versus ε from one minimum-norm run: the per-sample norms as a record holds them, and the curve.

A minimum-norm attack (FMN, Carlini–Wagner, FAB's min-norm mode) leaves each sample's smallest verified
adversarial norm (``Evaluation.norms``, NaN where none was found). A cell row keeps them in
``extra["norms"]`` (null where none), so the curve is recomputed from any output (CSV, JSON, SQLite)
through the engine's own ``Evaluation.curve``; this module turns rows back into evaluations, picks the
budgets a curve is drawn at, and draws it (the CLI's PNG, the leaderboard's lines).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustkit.results.figure_file import save_figure
from robustkit.results.outcome import Evaluation
from robustkit.results.store import unpack
from robustkit.threats import threat_class

SCALES = (0.25, 0.5, 1.0, 2.0)  # the multiples of the run's ε the CLI prints


def stored_norms(norms: Tensor) -> list[float | None]:
    """Per-sample norms (or query counts) as a record holds them: floats, null where no verified example was found."""
    return [None if math.isnan(v) else v for v in norms.tolist()]


def row_norms(row: dict[str, Any] | Any) -> Tensor | None:
    """The per-sample norms a cell row stores (None for a bounded attack's row)."""
    extra = row["extra"]
    extra = json.loads(extra) if isinstance(extra, str) and extra else extra
    values = extra.get("norms") if isinstance(extra, dict) else None
    if values is None:
        return None
    return torch.tensor([float("nan") if v is None else float(v) for v in values], dtype=torch.float32)


def row_evaluation(row: dict[str, Any] | Any) -> Evaluation | None:
    """A minimum-norm cell row as the engine's ``Evaluation`` (its ``curve`` gives robust accuracy at any ε);
    None for a row of a bounded attack."""
    norms = row_norms(row)
    if norms is None:
        return None
    n = int(row["n"])
    return Evaluation(unpack(row["clean_correct"], n), unpack(row["robust"], n), norms)


def curve_budgets(norms: Tensor, eps: float) -> list[float]:
    """Budgets a curve is drawn at: 0, every verified norm (where the curve steps down) and 2·ε or
    a little past the largest norm, whichever is further."""
    found = sorted(set(norms[~norms.isnan()].tolist()))
    end = max(2 * eps, 1.05 * found[-1] if found else 0.0)
    return [0.0, *found, end]


def draw_curve(ax, evaluation: Evaluation, eps: float, label: str, *, band: bool = False, **style) -> None:
    """The one-run curve on a matplotlib axis, as steps (robust accuracy falls at each verified norm);
    with ``band``, each step's 95 % interval shaded around it."""
    budgets = curve_budgets(evaluation.norms, eps)
    (line,) = ax.step(budgets, evaluation.curve(budgets), where="post", label=label, **style)
    if band:
        intervals = evaluation.curve_intervals(budgets)
        ax.fill_between(
            budgets,
            [i.low for i in intervals],
            [i.high for i in intervals],
            step="post",
            color=line.get_color(),
            alpha=0.2,
            linewidth=0,
            label="95 % interval (Clopper–Pearson)",
        )


def save_curve_plot(evaluation: Evaluation, path: str | Path, *, norm: str, eps: float, title: str) -> Path:
    """A PNG of robust accuracy versus ε from one minimum-norm run, its 95 % interval shaded, the run's ε marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.8))
    draw_curve(ax, evaluation, eps, "robust accuracy (one run)", band=True)
    at_eps = evaluation.curve_intervals([eps])[0].text()
    ax.axvline(eps, color="grey", linestyle=":", label=f"ε = {eps:.4g}: {evaluation.robust_accuracy:.4f} {at_eps}")
    ax.set(xlabel=f"ε ({threat_class(norm).name})", ylabel="robust accuracy", ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
