"""How the formats people read (Markdown, HTML, LaTeX) lay a leaderboard out: a board that fits the page.

CSV and JSON keep the one wide table with every column under its machine name. The formats people
read split it into parts: the board (rank, entry, clean accuracy, the headline it is ranked by and
whether the next rank is separated from it, the worst case per threat model and budget, rates, checks,
time), then per threat-model family each
attack's own figure, then what the figures depend on (data, subset, checkpoint, versions). A part's
title says what its columns share, so heads repeat nothing: ``worst linf ε=0.1`` is ``linf ε=0.1`` on
the board, ``patch patch ε=4`` is ``patch ε=4`` and ``fooling-rate fooling ε=0.99`` is
``fooling rate ε=0.99``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from robustkit.results.certified import FAMILY_TITLE as CERTIFIED_TITLE
from robustkit.results.certified import NORM as CERTIFIED
from robustkit.results.published import AA, CLEAN

# a figure column: "worst linf ε=0.1", "reliable l2 ε=1.5", "pgd-bpda linf ε=0.1" (names hold no spaces)
# (an ε holds no "_": "worst linf ε=0.1_low" is that figure's interval bound, not a figure)
MEASURED = re.compile(r"^(?P<what>\S+) (?P<norm>\S+) ε=(?P<eps>[^\s_]+)$")
HEADLINE = "headline"  # the ranking key: "headline linf ε=0.1", the worst case at the headline budget
NOT_SEPARATED = "≈ next"  # people's formats: "≈" where the paired test does not separate a rank from the next
IDENTITY = ["rank", "entry"]
BOARD_OTHERS = [
    "clean_accuracy",
    CLEAN,
    NOT_SEPARATED,
    "checks",
    "mean_corruption_accuracy",
    "mCE",
    "attack_seconds",
]  # besides the figures it shows
PREFIX_DIGITS = 16  # of a SHA-256 where a page is narrow (LaTeX, an entry's card): shown as a prefix, and called one
PREFIX_HEAD = "checkpoint SHA-256 prefix"
HEADS = {
    "clean_accuracy": "clean",
    "attack_seconds": "seconds",
    "checkpoint_sha256": "checkpoint SHA-256",
    "mean_corruption_accuracy": "corruptions mean",
    "checkpoint_sha256_prefix": PREFIX_HEAD,
}
FAMILY_TITLES = {CERTIFIED: CERTIFIED_TITLE}  # groups whose figures are not attacks' robust accuracies
ON_THE_BOARD = (HEADLINE, "worst", "reliable", AA)  # figure kinds the board shows; the rest are per attack


@dataclass
class Part:
    """One table of the layout: its title, its rows and columns (machine names) and the heads shown."""

    kind: str  # board | family | provenance
    title: str
    table: pd.DataFrame
    heads: dict[str, str] = field(default_factory=dict)

    def shown(self) -> pd.DataFrame:
        return self.table.rename(columns=self.heads)


def parts(table: pd.DataFrame, family_of: Callable[[str], str]) -> list[Part]:
    """The board, one part per threat-model family where two or more attacks ran at a budget (their own
    figures: with one attack the board's worst case is its figure), and the provenance part.

    ``family_of(norm)`` names a norm's family; rank and entry head every part."""
    figures = {c: MEASURED.match(str(c)) for c in table.columns}
    figures = {c: m for c, m in figures.items() if m}
    on_board = [c for c, m in figures.items() if m["what"] in ON_THE_BOARD or m["what"].endswith("-rate")]
    per_attack = [c for c in figures if c not in on_board]
    identity = [c for c in IDENTITY if c in table]
    board = [c for c in table.columns if c in on_board or c in BOARD_OTHERS]
    provenance = [c for c in table.columns if c not in identity + board + per_attack]
    result = [Part("board", "", table[identity + board], {c: _board_head(c, figures.get(c)) for c in board})]
    families: dict[str, list[str]] = {}
    for column in per_attack:
        families.setdefault(family_of(figures[column]["norm"]), []).append(column)
    for family, columns in families.items():
        budgets = [(figures[c]["norm"], figures[c]["eps"]) for c in columns]
        if family not in FAMILY_TITLES and len(set(budgets)) == len(budgets):
            continue  # one attack per budget: the board's worst case is its figure (a titled group is not a worst case)
        single_norm = len({figures[c]["norm"] for c in columns}) == 1
        heads = {c: _attack_head(figures[c], single_norm) for c in columns}
        result.append(Part("family", family, table[identity + columns], heads))
    if provenance:
        result.append(Part("provenance", "", table[identity + provenance], {c: HEADS.get(c, c) for c in provenance}))
    return result


def digest_prefix(value: object) -> str:
    """The first ``PREFIX_DIGITS`` of each digest in a cell (merged runs list several, comma-separated)."""
    if not isinstance(value, str):
        return ""
    return ", ".join(digest[:PREFIX_DIGITS] for digest in value.split(", "))


def digest_prefixes(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the checkpoint's SHA-256 cut to a prefix, under a head that says so."""
    if "checkpoint_sha256" not in table:
        return table
    shortened = table.assign(checkpoint_sha256=table["checkpoint_sha256"].map(digest_prefix))
    return shortened.rename(columns={"checkpoint_sha256": "checkpoint_sha256_prefix"})


def short_head(column: str) -> str:
    """A figure column's head with its threat model's name said once (``patch patch ε=4`` → ``patch ε=4``)."""
    m = MEASURED.match(column)
    if not m:
        return HEADS.get(column, column)
    what, norm, eps = m["what"], m["norm"], m["eps"]
    if what == norm:
        return f"{what} ε={eps}"
    if what == f"{norm}-rate":
        return f"{norm} rate ε={eps}"
    return column


def _board_head(column: str, figure: re.Match | None) -> str:
    if figure is not None and figure["what"] == "worst":
        return f"{figure['norm']} ε={figure['eps']}"  # the board's title says these are the worst cases
    return short_head(column)


def _attack_head(figure: re.Match, single_norm: bool) -> str:
    """In a family's table: ``pgd ε=0.1`` when the family has one norm there, else ``pgd linf ε=0.1``."""
    what, norm, eps = figure["what"], figure["norm"], figure["eps"]
    return f"{what} ε={eps}" if single_norm or what == norm else f"{what} {norm} ε={eps}"


BOARD_TITLE = (
    "Worst case per threat model and budget: a sample counts as robust only if every attack failed on it; "
    "in brackets the 95 % interval (Clopper–Pearson, exact)"
)


def board_title(headline: str | None) -> str:
    """The board's caption: what its figures are, which column ranks, and what ``≈ next`` says."""
    if headline is None:
        return f"{BOARD_TITLE}; ranked by clean accuracy (no robust accuracy to rank by)"
    m = MEASURED.match(headline)
    return (
        f"{BOARD_TITLE}; ranked by the headline, the worst case at {m['norm']} ε={m['eps']} (ties: the higher clean "
        f"accuracy); {NOT_SEPARATED}: ≈ where that rank is not separated from the one below it (McNemar's exact "
        "test on the same images, p ≥ 0.05; ? where the store holds no per-image outcomes)"
    )


def title(part: Part) -> str:
    """What a part's heading says."""
    if part.kind == "board":
        return part.title or BOARD_TITLE
    if part.kind == "family":
        return FAMILY_TITLES.get(part.title, f"{part.title}: each attack's robust accuracy")
    return "What the figures depend on"
