"""Leaderboards from the results store: one row per model entry, rendered with pandas.

The worst case for a model at one (norm, ε) is the per-sample AND of every attack's ``robust``
outcome on the same fixed subset: a sample counts as robust only if no attack broke it. Entries are
ranked by one figure that means something on its own, the **headline**: the worst case at one
(norm, ε), the suite's ``headline:`` where it names one, else the smallest L∞ budget evaluated (the
field's usual headline threat model), else the first ε-style budget in column order; ties go to the
higher clean accuracy. An average over threat models (L∞, L2, L0, patch, spatial) would mean nothing,
so there is none: the worst case per (norm, ε) stands beside the headline, grouped by threat model.
Accuracies are floats in [0, 1].

Every accuracy carries its 95 % interval (``robustkit.results.intervals``): Clopper–Pearson on the
count, from the per-sample bits where the store has them (the worst case is one yes/no per image), else
from the stored fraction and n. CSV and JSON hold ``<column>_low`` and ``<column>_high``; the formats
people read show it in brackets. Adjacent ranks are compared on the same images with McNemar's exact
test on the headline's per-image outcomes (``next_pvalue``); the board marks ``≈`` where a rank is
not separated from the one below it.

Threat models without clean images (fooling) have no robust accuracy: their cells count classes, and
the table shows per entry the share of classes fooled by any of their attacks (``<norm>-rate``, lower
is better), beside the worst-case columns and never the headline.

Reading a store needs pandas and NumPy only: threat models' traits come from ``robustkit.plugin_index``,
so ``robustkit leaderboard`` imports no torch, and matplotlib only when it draws.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from robustkit.errors import ConfigError
from robustkit.plugin_index import find, setting_defaults
from robustkit.results import corruption_board, layout
from robustkit.results.certified import add_certified, plot_certified
from robustkit.results.figure_file import save_figure
from robustkit.results.flagged import COLUMN as FLAGGED
from robustkit.results.flagged import flagged_columns, with_marks
from robustkit.results.intervals import (
    NO_INTERVAL,
    Interval,
    fraction_interval,
    mcnemar_pvalue,
    proportion_interval,
    separated,
)
from robustkit.results.latex import tex
from robustkit.results.per_class import per_class_table
from robustkit.results.published import AA as PUBLISHED_AA
from robustkit.results.published import CLEAN as PUBLISHED_CLEAN
from robustkit.results.published import SOURCE as PUBLISHED_SOURCE
from robustkit.results.published import add_published
from robustkit.results.store import unpack_bits, weights_identity

FORMATS = ("md", "csv", "html", "latex", "json")
_ALIASES = {"markdown": "md", "tex": "latex", "htm": "html"}
HEADLINE, NEXT_PVALUE, NOT_SEPARATED = layout.HEADLINE, "next_pvalue", layout.NOT_SEPARATED
PRIMARY_NORM = "linf"  # the headline's threat model where a suite names none: the field ranks by L∞ (RobustBench)
LOW, HIGH = "_low", "_high"  # a figure's interval columns: "<column>_low", "<column>_high"
# Per entry, what its figures depend on besides the attacks: (table column, store column)
PROVENANCE = [
    ("dataset", "dataset"),
    ("n_samples", "n_samples"),
    ("seed", "sample_seed"),
    ("checkpoint_sha256", "checkpoint_sha256"),
    ("robustkit_version", "robustkit_version"),
    ("torch_version", "torch_version"),
]

CELL = ["entry", "attack", "norm", "eps", "source"]  # one leaderboard cell, whatever its settings or weights
UNORDERED = 99  # ``ThreatModel.family_order`` of a threat model no longer registered: its group goes last


def format_name(text: str) -> str:
    """The canonical name of an output format, accepting the usual aliases (``markdown``, ``tex``)."""
    name = _ALIASES.get(text.lower(), text.lower())
    if name not in FORMATS:
        raise ConfigError(f"unknown format '{text}' (choose from markdown/md, latex/tex, html, csv, json)")
    return name


def suite_names(cells: pd.DataFrame, members: pd.DataFrame) -> list[str]:
    """Every suite a store's cells belong to."""
    return sorted({*cells["suite"].dropna(), *members["suite"]})


def of_suite(rows: pd.DataFrame, members: pd.DataFrame, name: str) -> pd.DataFrame:
    """The cells (or check runs) of suite ``name``: those it evaluated and those it reused from another
    suite (the cell key leaves out the suite's name, so a row's ``suite`` is only its first user)."""
    keys = set(members.loc[members["suite"] == name, "key"])
    return rows[(rows["suite"] == name) | rows["key"].isin(keys)]


def latest(cells: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The newest row of each cell, and how many older ones were dropped.

    A store keeps the rows of earlier runs (an attack's settings changed, a model retrained); a
    leaderboard must count each (entry, attack, norm, ε) once, from its latest evaluation. Pick one
    suite's cells first (``of_suite``): two suites may rank the same entry with different settings.
    """
    if cells.empty:
        return cells, 0
    names = [c for c in CELL if c in cells]
    newest = cells.sort_values("created", kind="stable").fillna({"source": ""})
    newest = newest.drop_duplicates(names, keep="last").sort_index()
    return cells.loc[newest.index], len(cells) - len(newest)


def worst_case(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (entry, norm, ε): the AND of the attacks' per-sample robust outcomes (``bits``), its accuracy and n.

    A row written before outcomes were stored has no bits: alone at its (norm, ε) its own figure is the
    worst case (``bits`` None: an interval from the fraction, no paired test); beside others it cannot be.
    """
    rows = []
    for (entry, norm, eps), group in cells.groupby(["entry", "norm", "eps"], sort=False):
        n = int(group["n"].iloc[0])
        if (group["n"] != n).any() or weights_identity(group).nunique() != 1:
            raise ConfigError(
                f"{entry}: cells at {norm} ε={eps:g} cover different samples or weights; "
                "merge stores of one suite run only"
            )
        blobs = [b for b in group["robust"] if isinstance(b, bytes)]
        if len(blobs) < len(group) and len(group) > 1:
            raise ConfigError(
                f"{entry}: cells at {norm} ε={eps:g} lack per-sample outcomes (written by an older "
                "robustkit), so their worst case cannot be taken; evaluate them again"
            )
        robust = None
        if blobs:
            robust = np.ones(n, dtype=bool)
            for blob in blobs:
                robust &= unpack_bits(blob, n)
        accuracy = float(robust.mean()) if robust is not None else float(group["robust_accuracy"].iloc[0])
        rows.append(
            {
                "entry": entry,
                "norm": norm,
                "eps": eps,
                "attacks": ", ".join(group["attack"]),
                "robust_accuracy": accuracy,
                "n": n,
                "bits": robust,
            }
        )
    return pd.DataFrame(rows, columns=["entry", "norm", "eps", "attacks", "robust_accuracy", "n", "bits"])


def count_interval(bits: np.ndarray | None, fraction: float | None, n: int | None) -> Interval:
    """The Clopper–Pearson interval of a proportion: counted from its per-sample bits, else from the fraction."""
    return proportion_interval(int(bits.sum()), len(bits)) if _has_bits(bits) else fraction_interval(fraction, n)


def _has_bits(bits) -> bool:
    """Are these per-sample outcomes (a row of an older store has none: None, or NaN once in a frame)?"""
    return isinstance(bits, np.ndarray)


def rated(cells: pd.DataFrame) -> pd.Series:
    """Per row: is it a cell of a threat model without clean images (fooling), counted over classes?"""
    return cells["norm"].map({norm: _no_clean_images(norm) for norm in set(cells["norm"])}).astype(bool)


def _no_clean_images(norm: str) -> bool:
    return not _traits(norm)["clean_images"]


def _traits(norm: str) -> dict:
    """The registered threat model's traits (``plugin_index.THREAT_TRAITS``); a threat model no longer
    registered is an ε-style one, as all were before, and a group of its own."""
    return find("threats", norm) or {
        "family": norm,
        "family_order": UNORDERED,
        "clean_images": True,
        "budget_axis": "ε",
        "whole_budget": False,
    }


def white_box(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells where each model was attacked directly (transfer cells, crafted on another entry, left out)."""
    if "source" not in cells:
        return cells
    return cells[cells["source"].isna() | (cells["source"] == "")]


def leaderboard(
    cells: pd.DataFrame,
    checks: pd.DataFrame | None = None,
    published: pd.DataFrame | None = None,
    headline: tuple[str, float] | None = None,
    certified: pd.DataFrame | None = None,
    corruptions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The ranked table: rank, model, defense, clean accuracy, the headline it is ranked by, whether the
    next rank is separated from it, worst case per (norm, ε), the reliable ensemble's figure, each
    attack's figure, the gradient-masking checks' verdict, time, and what the figures depend on (data,
    subset, checkpoint hash, versions); every accuracy with its interval (``<column>_low``/``_high``).

    ``headline`` (norm, ε) names the budget whose worst case ranks (a suite's ``headline:``); by default
    the smallest L∞ budget evaluated, else the first ε-style one in column order. Its column is
    ``headline <norm> ε=<ε>``; ``next_pvalue`` is McNemar's exact paired test of its per-image outcomes
    against the next rank's (NaN for the last rank, or where the store has no per-sample bits).

    Given ``published`` figures (``robustkit.results.published``), matching entries also show the published
    clean and AutoAttack accuracies beside ours, and their source with the provenance.

    Given ``certified`` rows (the store's ``certified`` table), each certified entry also shows certified
    accuracy per L2 radius and the empirical figure of the same smoothed classifier (``results.certified``).

    Given ``corruptions`` (the store's corruption runs), the common-corruption group follows the figures:
    the mean corruption accuracy with its bootstrap interval, and mCE against the entry of the same model
    without a defense (``corruption_board``).

    Transfer cells are not part of it (see ``transfer_matrix``). Cells of threat models without clean
    images give one column per (norm, ε): the share of classes fooled by any attack (``fooling-rate
    fooling ε=0.99``, lower is better). It is not a robust accuracy and never the headline.
    """
    cells = white_box(cells)
    if cells.empty:
        raise ConfigError("the results store holds no finished cells yet")
    table = cells.groupby("entry", sort=False).agg(
        model=("model", "first"),
        defense=("defense", "first"),
        clean_accuracy=("clean_accuracy", "first"),
        attack_seconds=("seconds", "sum"),
    )
    table["attack_seconds"] = table["attack_seconds"].round().astype("Int64")  # whole seconds: a timing, not a figure
    provenance = cells.groupby("entry", sort=False).agg(**{c: (source, _distinct) for c, source in PROVENANCE})
    classes, cells = cells[rated(cells)], cells[~rated(cells)]
    n_images = cells.groupby("entry", sort=False)["n"].first()
    intervals: dict[str, dict[str, Interval]] = {
        "clean_accuracy": {
            e: fraction_interval(_or(a, None), n_images.get(e)) for e, a in table["clean_accuracy"].items()
        }
    }
    worst = worst_case(cells)
    pairs = sorted({(n, e) for n, e in zip(worst["norm"], worst["eps"], strict=True)})
    for norm, eps in pairs:
        column = f"worst {norm} ε={eps:.4g}"
        here = worst[(worst["norm"] == norm) & (worst["eps"] == eps)].set_index("entry")
        table[column] = here["robust_accuracy"]
        intervals[column] = {e: count_interval(r.bits, r.robust_accuracy, r.n) for e, r in here.iterrows()}
    for (attack, norm, eps), group in sorted(
        cells.groupby(["attack", "norm", "eps"]), key=lambda g: (g[0][1], g[0][2], g[0][0])
    ):
        column = f"{_figure_name(attack)} {norm} ε={eps:.4g}"
        table[column] = group.set_index("entry")["robust_accuracy"]
        intervals[column] = {r.entry: fraction_interval(_or(r.robust_accuracy, None), r.n) for r in group.itertuples()}
    if not classes.empty:
        fooled = worst_case(classes)  # per class: robust only if no attack found a verified image
        for (norm, eps), group in fooled.groupby(["norm", "eps"], sort=True):
            column = f"{norm}-rate {norm} ε={eps:.4g}"
            table[column] = 1 - group.set_index("entry")["robust_accuracy"]
            intervals[column] = {
                r.entry: count_interval(~r.bits if _has_bits(r.bits) else None, 1 - r.robust_accuracy, r.n)
                for r in group.itertuples()
            }
    top = headline_budget(pairs, headline)
    top_column = f"{HEADLINE} {top[0]} ε={top[1]:.4g}" if top else None
    if top_column:
        table[top_column] = table[f"worst {top[0]} ε={top[1]:.4g}"]
        intervals[top_column] = intervals[f"worst {top[0]} ε={top[1]:.4g}"]
    if checks is not None and not checks.empty:
        scored = set(zip(cells["entry"], weights_identity(cells), strict=True))  # checks of older weights do not count
        current = checks[[(e, s) in scored for e, s in zip(checks["entry"], weights_identity(checks), strict=True)]]
        table["checks"] = _check_verdicts(current, table.index)
        table[FLAGGED] = flagged_columns(cells, current, table.index, _figure_name)
        if top_column:  # the headline is the worst case under another name: flagged alike
            table[FLAGGED] = [
                f"{f}; {top_column}" if f"worst {top[0]} ε={top[1]:.4g}" in f.split("; ") else f for f in table[FLAGGED]
            ]
    table = add_certified(add_published(table, published), intervals, certified)
    if corruptions is not None and not corruptions.empty:
        group, more = corruption_board.corruption_columns(list(table.index), corruptions)
        table, intervals = table.join(group), {**intervals, **more}
    ranking = table[top_column] if top_column else pd.Series(np.nan, index=table.index)
    order = sorted(table.index, key=lambda e: (-_or(ranking[e], -1.0), -_or(table.loc[e, "clean_accuracy"], -1.0), e))
    table = table.loc[order]
    if top_column:
        bits = worst[(worst["norm"] == top[0]) & (worst["eps"] == top[1])].set_index("entry")["bits"]
        table[NEXT_PVALUE] = next_pvalues([bits.get(e) for e in order])
    table = table.join(provenance).reset_index()
    table.insert(0, "rank", range(1, len(table) + 1))
    measured = sorted((c for c in table.columns if _MEASURED.match(c) and c != top_column), key=_column_place)
    beside = [PUBLISHED_CLEAN] if PUBLISHED_CLEAN in table else []
    ranked = [top_column, NEXT_PVALUE] if top_column else []
    front = [
        "rank",
        "entry",
        "model",
        "defense",
        "clean_accuracy",
        *beside,
        *ranked,
        *measured,
        *(c for c in corruption_board.COLUMNS if c in table),
    ]
    back = ["attack_seconds", *provenance.columns, *([PUBLISHED_SOURCE] if PUBLISHED_SOURCE in table else [])]
    return with_intervals(table[front + [c for c in table.columns if c not in front + back] + back], intervals)


def headline_budget(pairs: list[tuple[str, float]], named: tuple[str, float] | None = None) -> tuple[str, float] | None:
    """The (norm, ε) whose worst case ranks: ``named`` (it must have been evaluated), else the smallest L∞
    budget, else the first ε-style budget in column order; None where there is none (fooling rates only)."""
    if named is not None:
        norm, eps = named
        found = [(n, e) for n, e in pairs if n == norm and math.isclose(e, eps, rel_tol=1e-6)]
        if not found:
            have = ", ".join(f"{n} {e:.4g}" for n, e in pairs) or "none"
            raise ConfigError(f"headline {norm} ε={eps:.4g} was not evaluated (the board has: {have})")
        return found[0]
    primary = sorted(e for n, e in pairs if n == PRIMARY_NORM)
    if primary:
        return PRIMARY_NORM, primary[0]
    return min(pairs, key=lambda p: _column_place(f"worst {p[0]} ε={p[1]:.4g}")) if pairs else None


def next_pvalues(bits: list[np.ndarray | None]) -> list[float]:
    """Per rank: McNemar's exact paired p-value of its per-image outcomes against the next rank's (NaN for
    the last, or where either has no bits)."""
    pairs = zip(bits, bits[1:] + [None], strict=True)
    return [
        round(mcnemar_pvalue(a, b), MACHINE_DECIMALS)
        if _has_bits(a) and _has_bits(b) and len(a) == len(b)
        else math.nan
        for a, b in pairs
    ]


def with_intervals(table: pd.DataFrame, intervals: dict[str, dict[str, Interval]]) -> pd.DataFrame:
    """``table`` with ``<column>_low`` and ``<column>_high`` right after each figure that has intervals
    (bounds rounded to ``MACHINE_DECIMALS``, as CSV and JSON write them)."""
    columns = []
    for column in table.columns:
        columns.append(table[column])
        if column in intervals:
            per_entry = [intervals[column].get(e, NO_INTERVAL) for e in table["entry"]]
            for suffix, bound in ((LOW, "low"), (HIGH, "high")):
                values = [getattr(i, bound) for i in per_entry]
                columns.append(
                    pd.Series(
                        [math.nan if v is None else round(v, MACHINE_DECIMALS) for v in values],
                        index=table.index,
                        name=f"{column}{suffix}",
                        dtype=float,
                    )
                )
    return pd.concat(columns, axis=1)


def _is_interval(column: str) -> bool:
    return column.endswith(LOW) or column.endswith(HIGH)


def _figure_name(attack: str) -> str:
    """An attack's column stem: the ensemble's figure is the one to trust, so it is called ``reliable``."""
    return "reliable" if attack == "ensemble" else attack


_MEASURED = layout.MEASURED


def _column_place(column: str) -> tuple:
    """Grouped by threat-model family (in ``ThreatModel.family_order``), the worst case first in each, then the
    reliable ensemble, then the published AutoAttack figure, then each attack; within those by norm and ε."""
    m = _MEASURED.match(column)
    traits = _traits(m["norm"])
    family, rank = traits["family"], traits["family_order"]
    kind = {"worst": 0, "reliable": 1, PUBLISHED_AA: 2}.get(m["what"], 3)
    return rank, family, kind, m["norm"], float(m["eps"]), m["what"]


def column_groups(columns: list[str]) -> list[tuple[str, int]]:
    """The page's header groups over ``columns``: (threat-model family or "", number of columns), in order."""
    groups: list[tuple[str, int]] = []
    for column in columns:
        m = _MEASURED.match(
            str(column).removesuffix(LOW).removesuffix(HIGH)
        )  # an interval's bounds go with their figure
        name = (
            _traits(m["norm"])["family"] if m and m["what"] != HEADLINE else ""
        )  # the headline stands before the groups
        name = (
            corruption_board.GROUP
            if str(column).removesuffix(LOW).removesuffix(HIGH) in corruption_board.COLUMNS
            else name
        )
        groups[-1:] = [(name, groups[-1][1] + 1)] if groups and groups[-1][0] == name else [*groups[-1:], (name, 1)]
    return groups


def _distinct(values: pd.Series):
    """The one value all of an entry's cells share, else each value once (merged runs may differ)."""
    unique = list(dict.fromkeys(values.dropna()))
    return unique[0] if len(unique) == 1 else ", ".join(map(str, unique))


def attack_settings(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per attack as it was run: name, norm, its ε values, on the model or transfer, what it read of the
    model (``access``: gradient, score or label; a label-only figure needed no scores), and the settings that
    differ from the attack's defaults ("defaults" when none do).

    With the table's per-entry columns this is what a reader needs to reproduce a figure; the stored
    cells keep every setting.
    """
    runs: dict[tuple[bool, str, str, str], set[float]] = {}
    for row in cells.itertuples():
        moved = isinstance(row.source, str) and row.source != ""
        runs.setdefault((moved, row.norm, row.attack, row.settings or "{}"), set()).add(row.eps)
    rows = [
        {
            "attack": attack,
            "norm": norm,
            "ε": ", ".join(f"{e:.4g}" for e in sorted(eps)),
            "run": "transfer" if moved else "on the model",  # not "white box": one-pixel, square… query only
            "access": (find("attacks", attack) or {}).get("access", ""),
            "settings": _differing(attack, json.loads(settings)),
        }
        for (moved, norm, attack, settings), eps in sorted(runs.items())
    ]
    return pd.DataFrame(rows, columns=["attack", "norm", "ε", "run", "access", "settings"])


def _differing(attack: str, settings: dict) -> str:
    """``steps=20, restarts=2``: the settings unlike the attack's defaults (all of a plugin not built in)."""
    defaults = setting_defaults("attacks", attack)
    shown = {k: v for k, v in settings.items() if k not in defaults or defaults[k] != v}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "defaults"


def _check_verdicts(checks: pd.DataFrame, entries: pd.Index) -> pd.Series:
    """Per entry: ``ok`` if no check raised a flag at any (norm, ε), else each flag with where it showed."""
    verdicts = {}
    for entry, group in checks.groupby("entry", sort=False):
        flagged = [f"{row.summary} ({row.norm} ε={row.eps:.4g})" for row in group.itertuples() if row.summary != "ok"]
        verdicts[entry] = "; ".join(flagged) if flagged else "ok"
    return pd.Series(verdicts).reindex(entries)


def transfer_matrix(cells: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per transfer attack (``"pgd linf ε=0.1"``): robust accuracy of each target (columns) under
    examples crafted on each source (rows). The diagonal is the white-box figure."""
    if "source" not in cells:
        return {}
    moved = cells[cells["source"].notna() & (cells["source"] != "")]
    matrices = {}
    for (attack, norm, eps), group in moved.groupby(["attack", "norm", "eps"], sort=False):
        order = list(dict.fromkeys([*group["source"], *group["entry"]]))
        matrix = group.pivot_table(index="source", columns="entry", values="robust_accuracy", aggfunc="first")
        matrix = matrix.reindex(
            index=[o for o in order if o in matrix.index], columns=[o for o in order if o in matrix.columns]
        )
        matrix.index.name, matrix.columns.name = "crafted on ↓ / scored on →", None
        matrices[f"{attack} {norm} ε={eps:.4g}"] = matrix
    return matrices


def sort_table(table: pd.DataFrame, column: str | None, descending: bool = True) -> pd.DataFrame:
    """Sort by a column named exactly or by a prefix of exactly one column; ``None`` keeps the ranking."""
    if column is None:
        return table
    matches = [c for c in table.columns if c == column] or [
        c for c in table.columns if c.startswith(column) and not _is_interval(c)
    ]
    if not matches:
        raise ConfigError(f"--sort '{column}' names no column (have: {', '.join(table.columns)})")
    if len(matches) > 1:
        raise ConfigError(f"--sort '{column}' matches {len(matches)} columns ({', '.join(matches)}): name one exactly")
    return table.sort_values(matches[0], ascending=not descending, kind="stable").reset_index(drop=True)


MACHINE_DECIMALS = 6  # CSV and JSON figures; the formats people read show 4


def render(table: pd.DataFrame, fmt: str, settings: pd.DataFrame | None = None) -> str:
    """The table as Markdown (GitHub), CSV, HTML, LaTeX or JSON (records).

    CSV and JSON are the one wide table, every column under its machine name, figures rounded to
    ``MACHINE_DECIMALS``: enough to tell apart any two accuracies over up to 10⁵ samples, few enough
    to drop float32 noise (0.8199999928474426 is 0.82).

    The formats people read (md, html, latex) lay it out in parts that fit a page (``layout``): the
    board, each family's per-attack figures, what the figures depend on, and given ``settings``
    (``attack_settings``) how each attack was run.
    """
    fmt = format_name(fmt)
    if fmt == "csv":
        return table.round(MACHINE_DECIMALS).to_csv(index=False)
    if fmt == "json":
        return table.round(MACHINE_DECIMALS).to_json(orient="records", indent=1, force_ascii=False)
    settings = settings if settings is not None and not settings.empty else None
    table = layout.digest_prefixes(table) if fmt == "latex" else table  # a page is narrower than 64 hex digits
    bracketed, with_brackets = _bracketed(table)
    marked, numeric, legend = with_marks(bracketed, _text)
    pieces = layout.parts(marked, lambda norm: _traits(norm)["family"])
    pieces[0].title = layout.board_title(next((c for c in table.columns if c.startswith(f"{HEADLINE} ")), None))
    numeric |= with_brackets
    return {"md": _render_markdown, "html": _render_html, "latex": _render_latex}[fmt](
        pieces, numeric, legend, settings
    )


def _bracketed(table: pd.DataFrame) -> tuple[pd.DataFrame, set[str]]:
    """For the formats people read: each figure as ``0.8060 [0.769, 0.839]`` (its interval columns dropped)
    and ``next_pvalue`` as the ``≈ next`` mark; also the columns turned to text. The page's board breaks a
    cell's line at its spaces: with every interval shown it still fits 1400 px."""
    shown, figures = table.copy(), set()
    for column in [c for c in table.columns if f"{c}{LOW}" in table]:
        low, high = table[f"{column}{LOW}"], table[f"{column}{HIGH}"]
        shown[column] = [_bracket(v, a, b) for v, a, b in zip(table[column], low, high, strict=True)]
        shown = shown.drop(columns=[f"{column}{LOW}", f"{column}{HIGH}"])
        figures.add(column)
    if NEXT_PVALUE in table:
        last = table["rank"] == table["rank"].max()
        marks = [
            "" if is_last else "?" if not _number(p) else "" if separated(p) else "≈"
            for p, is_last in zip(table[NEXT_PVALUE], last, strict=True)
        ]
        shown.insert(shown.columns.get_loc(NEXT_PVALUE), NOT_SEPARATED, marks)
        shown = shown.drop(columns=[NEXT_PVALUE])
    return shown, figures


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def _bracket(value, low, high) -> str:
    """A figure as people read it on a board: ``0.8060 [0.769, 0.839]``, the figure alone without an interval."""
    return _text(value) + (f" {Interval(low, high).text('.3f')}" if _number(low) and _number(high) else "")


SETTINGS_TITLE = "Attack settings (those that differ from the attack's defaults)"


def _render_markdown(pieces: list[layout.Part], numeric: set[str], legend: str, settings: pd.DataFrame | None) -> str:
    """The board first (its header is the text's first line), its caption, then each part under a bold title."""
    text = []
    for part in pieces:
        table = _markdown(part.shown(), _renamed(numeric, part))
        text.append(
            f"{table}\n{layout.title(part)}.\n" if part.kind == "board" else f"\n**{layout.title(part)}**\n\n{table}"
        )
    text += [f"\n{legend}\n"] if legend else []
    text += [f"\n**{SETTINGS_TITLE}**\n\n{_markdown(settings)}"] if settings is not None else []
    return "".join(text)


def _render_html(pieces: list[layout.Part], numeric: set[str], legend: str, settings: pd.DataFrame | None) -> str:
    """The sortable board and its caption; every other part folded under its title (the settings open)."""
    text = []
    for part in pieces:
        table, title = _html(part, _renamed(numeric, part)), html.escape(layout.title(part))
        text.append(
            f'{table}\n<p class="caption">{title}.</p>'
            if part.kind == "board"
            else f"\n<details><summary>{title}</summary>\n{table}</details>"
        )
    text += [f'\n<p class="legend">{html.escape(legend)}</p>'] if legend else []
    if settings is not None:
        text.append(
            f"\n<details open><summary>{html.escape(SETTINGS_TITLE)}</summary>\n{_html_plain(settings, 'settings')}</details>"
        )
    return "".join(text)


def _render_latex(pieces: list[layout.Part], numeric: set[str], legend: str, settings: pd.DataFrame | None) -> str:
    """One booktabs tabular per part, the board first; the rest under bold titles."""
    text = ["% robustkit leaderboard: needs \\usepackage{booktabs}\n"]
    for part in pieces:
        table = _latex(part.shown(), numeric=_renamed(numeric, part))
        text.append(
            f"{table}\n{tex(layout.title(part))}.\n"
            if part.kind == "board"
            else _latex_titled(layout.title(part), table)
        )
    text += [f"\n\\smallskip\n\n{tex(legend)}\n"] if legend else []
    text += [_latex_titled(SETTINGS_TITLE, _latex(settings, wrap="settings"))] if settings is not None else []
    return "".join(text)


def _latex_titled(title: str, table: str) -> str:
    return f"\n\\medskip\n\n\\textbf{{{tex(title)}}}\n\n\\smallskip\n{table}"


def _renamed(numeric: set[str], part: layout.Part) -> set[str]:
    """The numeric columns of ``part`` under the heads it shows."""
    return {part.heads.get(c, c) for c in numeric if c in part.table}


def _html(part: layout.Part, numeric: set[str]) -> str:
    """A part as an HTML table; the board is the sortable one, its figures grouped by threat-model family."""
    board = part.kind == "board"
    text = _html_plain(part.shown(), "leaderboard" if board else "detail", table_id="leaderboard" if board else None)
    if not board:
        return text
    cells = "".join(
        f'<th colspan="{n}" class="group">{html.escape(name)}</th>'
        for name, n in column_groups(list(part.table.columns))
    )
    return text.replace("<thead>", f'<thead>\n    <tr class="groups">{cells}</tr>', 1)


def _html_plain(table: pd.DataFrame, kind: str, table_id: str | None = None) -> str:
    return table.to_html(
        index=False, float_format=lambda v: f"{v:.4f}", na_rep="", border=0, classes=kind, table_id=table_id
    )


def _text(value) -> str:
    """A cell as the human formats show it: 4 decimals, NaN blank."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return "" if value is None else str(value)


def _markdown(table: pd.DataFrame, numeric: set[str] | None = None) -> str:
    """GitHub Markdown; ``numeric`` columns are right-aligned [those of a numeric dtype]."""
    numeric = numeric if numeric is not None else {c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])}
    lines = [
        "| " + " | ".join(map(str, table.columns)) + " |",
        "|" + "|".join("---:" if c in numeric else "---" for c in table.columns) + "|",
    ]
    lines += [
        "| " + " | ".join(_text(v).replace("|", "\\|") for v in row) + " |" for row in table.itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"


def _latex(table: pd.DataFrame, wrap: str | None = None, numeric: set[str] | None = None) -> str:
    """A booktabs tabular, every header and cell escaped (``tex``); column ``wrap`` breaks its lines."""
    numeric = numeric if numeric is not None else {c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])}
    align = "".join(r"p{0.5\linewidth}" if c == wrap else "r" if c in numeric else "l" for c in table.columns)
    norms = [c == "norm" for c in table.columns]
    header = " & ".join(tex(str(c), norms=True) for c in table.columns) + r" \\"
    rows = [
        " & ".join(tex(_text(v), norms=n) for v, n in zip(row, norms, strict=True)) + r" \\"
        for row in table.itertuples(index=False)
    ]
    lines = [
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
        header,
        r"\midrule",
        *rows,
        r"\bottomrule",
        r"\end{tabular}",
    ]
    return "\n".join(lines) + "\n"


def plot_curves(cells: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Worst-case robust accuracy vs ε, one line per model entry and one panel per norm (ε = 0: clean),
    each point with its 95 % interval; saved at ``path``."""
    return save_figure(curves_figure(cells, title), path)


def curves_figure(cells: pd.DataFrame, title: str = ""):
    """``plot_curves``'s figure. Only measured points are joined: an entry with one budget in a panel shows
    its clean and robust points without a line, which would read as measured values in between."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    worst = worst_case(cells[~rated(cells)])
    clean = cells.groupby("entry", sort=False)["clean_accuracy"].first()
    n_images = cells[~rated(cells)].groupby("entry", sort=False)["n"].first()
    norms = list(dict.fromkeys(worst["norm"]))
    fig, axes = plt.subplots(1, max(len(norms), 1), figsize=(5 * max(len(norms), 1), 3.8), squeeze=False)
    if not norms:  # only rated cells (fooling rates): no budget axis to draw along
        axes[0][0].text(
            0.5, 0.5, "no robust-accuracy cells to plot\n(fooling rates are in the table)", ha="center", va="center"
        )
        axes[0][0].set_axis_off()
    for ax, norm in zip(axes[0], norms, strict=False):
        here = worst[worst["norm"] == norm]
        for entry, group in here.groupby("entry", sort=False):
            group = group.sort_values("eps")
            bounds = [
                fraction_interval(clean[entry], n_images[entry]),
                *(count_interval(r.bits, r.robust_accuracy, r.n) for r in group.itertuples()),
            ]
            y = [clean[entry], *group["robust_accuracy"]]
            yerr = [
                [_or(v - (b.low if b.low is not None else v), 0.0) for v, b in zip(y, bounds, strict=True)],
                [_or((b.high if b.high is not None else v) - v, 0.0) for v, b in zip(y, bounds, strict=True)],
            ]
            joined = len(group) > 1  # two points only (clean, one budget): nothing measured between them
            ax.errorbar(
                [0.0, *group["eps"]],
                y,
                yerr=yerr,
                marker="o",
                linestyle="-" if joined else "none",
                capsize=3,
                label=entry,
            )
        _draw_one_run_curves(ax, cells[(cells["norm"] == norm) & ~rated(cells)])
        threat = _traits(norm)
        ax.set(
            xlabel=threat["budget_axis"] if threat["budget_axis"] != "ε" else f"ε ({norm})",
            ylabel="worst-case robust accuracy",
            ylim=(0, 1),
            title=f"{title} {norm}".strip()
            + (
                "\n(one budget: measured points, no curve between them)"
                if here.groupby("entry").size().max() == 1
                else ""
            ),
        )
        if threat["whole_budget"]:
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def _draw_one_run_curves(ax, cells: pd.DataFrame) -> None:
    """Beside the worst-case points: each minimum-norm cell's whole curve, from the norms its row stores."""
    if "extra" not in cells:
        return
    rows = [row for row in cells.to_dict("records") if _holds_norms(row["extra"])]
    if not rows:
        return
    from robustkit.results.norm_curve import (  # torch: only a minimum-norm row's curve needs it
        draw_curve,
        row_evaluation,
    )

    for row in rows:
        evaluation = row_evaluation(row)
        if evaluation is not None:
            draw_curve(ax, evaluation, float(row["eps"]), f"{row['entry']} {row['attack']} (one run)", linestyle="--")


def _holds_norms(extra) -> bool:
    """Does a row's ``extra`` keep per-sample norms (a minimum-norm cell)? Read without torch."""
    extra = json.loads(extra) if isinstance(extra, str) and extra else extra
    return isinstance(extra, dict) and extra.get("norms") is not None


def html_page(
    table: pd.DataFrame, svg: str, title: str, extra: str = "", settings: pd.DataFrame | None = None, cards: str = ""
) -> str:
    """One self-contained page: the sortable table (click a header; ``#sort=column`` on load; the header
    stays in view while the table scrolls), the attack settings, the plot, ``extra`` HTML (the transfer
    matrices) and the entries' ``cards``."""
    body = render(table, "html", settings)
    svg = svg[svg.find("<svg") :] if "<svg" in svg else ""
    return _PAGE.format(title=html.escape(title), table=body, plot=svg, extra=extra, cards=cards)


def entry_cards(cells: pd.DataFrame, order: list[str]) -> str:
    """Per entry (in ``order``): what its weights are (architecture, defense and settings, epochs, training
    time, clean accuracy, checkpoint SHA-256) and, per attack, a few clean-over-adversarial examples."""
    cells = white_box(cells)
    parts = ['<h2>Entries</h2>\n<div class="cards">']
    for entry in order:
        group = cells[cells["entry"] == entry]
        if group.empty:
            continue
        first = group.iloc[0]
        clean = pd.to_numeric(group["clean_accuracy"], errors="coerce").dropna()  # fooling cells have none
        card = json.loads(first["training"]) if isinstance(first.get("training"), str) and first["training"] else {}
        seconds = card.get("train_seconds")
        facts = [
            ("architecture", card.get("architecture", first["model"])),
            (
                "defense",
                first["defense"]
                + (f" ({_settings_text(card['defense_settings'])})" if card.get("defense_settings") else ""),
            ),
            ("epochs", card.get("epochs", "")),
            ("training time", f"{seconds:.0f} s" if seconds else ""),
            ("clean accuracy", _text(float(clean.iloc[0])) if len(clean) else "—"),
            (layout.PREFIX_HEAD, layout.digest_prefix(first["checkpoint_sha256"])),
        ]
        rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts if v != "")
        figures = []
        for row in group.sort_values(["norm", "eps", "attack"]).itertuples():
            blob = getattr(row, "examples", None)
            if isinstance(blob, bytes) and blob:
                source = "data:image/png;base64," + base64.b64encode(blob).decode()
                caption = html.escape(f"{row.attack} {row.norm} ε={row.eps:.4g}")
                shows = "fooling images" if _no_clean_images(row.norm) else "clean over adversarial"
                figures.append(
                    f'<figure><img src="{source}" alt="{shows}: {caption}"><figcaption>{caption}</figcaption></figure>'
                )
        shown = "".join(figures) or "<p>no broken examples to show</p>"
        parts.append(
            f'<section class="card" id="entry-{html.escape(entry)}"><h3>{html.escape(entry)}</h3>'
            f'<dl>{rows}</dl><div class="examples">{shown}</div></section>'
        )
    return "\n".join(parts) + "\n</div>"


def _settings_text(settings: dict) -> str:
    """``eps=0.1, steps=3``: a setting left at None means "the default" and says nothing, so it is left out."""
    return ", ".join(f"{k}={v}" for k, v in sorted(settings.items()) if v is not None)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table.leaderboard, table.transfer, table.settings {{ border-collapse: collapse; font-size: 14px; }}
table.leaderboard th, table.leaderboard td, table.transfer th, table.transfer td {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }}
table.settings th, table.settings td {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; }}
table.leaderboard thead {{ position: sticky; top: 0; z-index: 1; }}
table.leaderboard th {{ cursor: pointer; background: #f4f4f4; }}
table.leaderboard tr.groups th {{ cursor: default; text-align: center; border-bottom: 2px solid #999; }}
table.leaderboard tr.groups th:empty {{ border-bottom: none; }}
table.leaderboard th[aria-sort]::after {{ content: " ▾"; }}
figure svg {{ max-width: 100%; height: auto; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 1em; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 1em; max-width: 46em; }}
.card dl {{ display: grid; grid-template-columns: max-content auto; gap: 2px 1em; font-size: 14px; }}
.card dt {{ color: #666; }} .card dd {{ margin: 0; word-break: break-all; }}
.card .examples {{ display: flex; flex-wrap: wrap; gap: 0.8em; }}
.card figure {{ margin: 0; font-size: 12px; }} .card img {{ image-rendering: pixelated; display: block; }}
</style></head><body>
<h1>{title}</h1>
<p>Click a column to sort; each attack's own figures, what they depend on and the settings are folded below the board.</p>
{table}
<figure>{plot}</figure>
{extra}
{cards}
<script>
(function () {{
  const table = document.getElementById("leaderboard");
  const head = table.tHead.rows;
  const headers = Array.from(head[head.length - 1].cells);  // the column names, under the threat-model groups
  function value(row, i) {{
    const text = row.cells[i].textContent.replace("⚑", "").split("[")[0].trim();  // a figure sorts as its number
    const number = parseFloat(text);
    return text !== "" && !isNaN(number) && /^[-+0-9.eE]+$/.test(text) ? number : text.toLowerCase();
  }}
  function sortBy(i, descending) {{
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort(function (a, b) {{
      const x = value(a, i), y = value(b, i);
      const order = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -order : order;
    }});
    rows.forEach(function (row) {{ body.appendChild(row); }});
    headers.forEach(function (h) {{ h.removeAttribute("aria-sort"); }});
    headers[i].setAttribute("aria-sort", descending ? "descending" : "ascending");
  }}
  headers.forEach(function (h, i) {{
    h.addEventListener("click", function () {{ sortBy(i, h.getAttribute("aria-sort") !== "descending"); }});
  }});
  const wanted = decodeURIComponent(location.hash.replace(/^#sort=/, ""));
  const index = headers.findIndex(function (h) {{ return h.textContent.trim() === wanted; }});
  if (index >= 0) sortBy(index, !/rank|entry|model|defense/.test(wanted));
  table.setAttribute("data-ready", "true");
}})();
</script>
</body></html>
"""


def publish(
    cells: pd.DataFrame,
    folder: str | Path,
    name: str,
    *,
    sort: str | None = None,
    checks: pd.DataFrame | None = None,
    published: pd.DataFrame | None = None,
    headline: tuple[str, float] | None = None,
    certified: pd.DataFrame | None = None,
    corruptions: pd.DataFrame | None = None,
) -> list[Path]:
    """Every format, the plot (PNG and SVG), the transfer matrices and the HTML page, as ``folder/name.*``;
    with ``certified`` rows also the certified-accuracy plot (``name.certified.png``/``.svg``) on the page, with
    ``corruptions`` the per-corruption plot (``name.corruptions.svg``) and folded table.

    ``cells`` are one suite's (``of_suite``): everything written is made of them alone.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = sort_table(
        leaderboard(cells, checks, published, headline, certified=certified, corruptions=corruptions), sort
    )
    settings = attack_settings(cells)
    written = []
    for fmt, suffix in zip(FORMATS, (".md", ".csv", ".table.html", ".tex", ".json"), strict=True):
        written.append(folder / f"{name}{suffix}")
        written[-1].write_text(render(table, fmt, settings))
    board = white_box(cells)
    written += [plot_curves(board, folder / f"{name}.png", name), plot_curves(board, folder / f"{name}.svg", name)]
    matrices = transfer_matrix(cells)
    if matrices:
        written.append(folder / f"{name}.transfer.md")
        written[-1].write_text(render_transfer(matrices, "md"))
        written.append(folder / f"{name}.transfer.csv")
        written[-1].write_text(render_transfer(matrices, "csv"))
    board_svg = next(p for p in written if p.suffix == ".svg")  # the first SVG: the board's own plot
    extra = per_class_html(cells, table) + (render_transfer(matrices, "html") if matrices else "")
    if certified is not None and not certified.empty:
        written += [plot_certified(certified, folder / f"{name}.certified.{kind}", name) for kind in ("png", "svg")]
        svg = written[-1].read_text()
        extra += f"<h2>Certified accuracy vs L2 radius (randomized smoothing)</h2>{svg[svg.find('<svg') :]}"
    drawn = corruption_board.plot_corruptions(
        corruptions, folder / f"{name}.corruptions.svg", list(table["entry"]), name
    )
    if drawn is not None:
        written.append(drawn)
        extra += corruption_board.corruption_html(corruptions, list(table["entry"]), drawn.read_text())
    written.append(folder / f"{name}.html")
    written[-1].write_text(
        html_page(
            table,
            board_svg.read_text(),
            f"robustkit leaderboard: {name}",
            extra,
            settings,
            entry_cards(cells, list(table["entry"])),
        )
    )
    return written


def per_class_html(cells: pd.DataFrame, table: pd.DataFrame) -> str:
    """A folded table of clean and robust accuracy per class (with intervals) at the headline budget: per
    entry and class, each attack's figure there; "" where no cell keeps ``extra["per_class"]`` (older stores)."""
    headline = next((_MEASURED.match(c) for c in table.columns if c.startswith(f"{HEADLINE} ")), None)
    if headline is None:
        return ""
    norm, eps = headline["norm"], float(headline["eps"])
    here = white_box(cells)
    here = here[(here["norm"] == norm) & np.isclose(here["eps"], eps, rtol=1e-4)]
    frames = []
    for entry in table["entry"]:
        attacks = {}
        for row in here[here["entry"] == entry].itertuples():
            extra = json.loads(row.extra) if isinstance(row.extra, str) and row.extra else (row.extra or {})
            if isinstance(extra, dict) and extra.get("per_class"):
                attacks[_figure_name(row.attack)] = per_class_table(extra["per_class"])
        if not attacks:
            continue
        first = next(iter(attacks.values()))
        frame = pd.DataFrame(
            {"entry": entry, "class": first["class"], "n": first["n"], "clean": _brackets(first, "clean")}
        )
        for attack, figures in attacks.items():
            frame[f"{attack} robust"] = _brackets(figures, "robust")
        frames.append(frame)
    if not frames:
        return ""
    summary = (
        f"Per class at the headline budget ({norm} ε={headline['eps']}): clean and each attack's robust "
        "accuracy, 95 % intervals in brackets"
    )
    return f"<details><summary>{html.escape(summary)}</summary>\n{_html_plain(pd.concat(frames), 'detail')}</details>\n"


def _brackets(frame: pd.DataFrame, figure: str) -> list[str]:
    return [
        _bracket(v, a, b)
        for v, a, b in zip(frame[figure], frame[f"{figure}_low"], frame[f"{figure}_high"], strict=True)
    ]


def render_transfer(matrices: dict[str, pd.DataFrame], fmt: str) -> str:
    """The transfer matrices one after another, each under its attack's name (md, csv or html)."""
    parts = []
    for title, matrix in matrices.items():
        frame = matrix.reset_index()
        if fmt == "md":
            parts.append(f"### transfer: {title}\n\n{_markdown(frame)}")
        elif fmt == "csv":
            parts.append(frame.assign(attack=title).round(MACHINE_DECIMALS).to_csv(index=False))
        else:
            parts.append(f"<h2>transfer: {html.escape(title)}</h2>\n{_html_plain(frame, 'transfer')}")
    return "\n".join(parts)


def _or(value: float, default: float) -> float:
    return default if value is None or (isinstance(value, float) and math.isnan(value)) else value
