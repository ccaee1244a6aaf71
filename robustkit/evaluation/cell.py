"""One cell evaluated (a model, an attack at one ε, the fixed subset) and the one record it makes.

The runner (every cell of a suite) and ``evaluate_model`` (one cell: ``robustkit evaluate`` and Python
users) both come through ``evaluate_cell``, so they fit, attack, verify and record alike: every run,
whatever its kind (white box, transfer, universal, fooling, with checks), is one row of the results
store's ``cells`` table, which CSV, JSON and SQLite outputs all hold.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustkit.attack import Attack
from robustkit.data.base import ImageDataset, IndexedSplit
from robustkit.defense import Defense
from robustkit.evaluation.checks import (
    CHECKS_VERSION,
    DEFAULT_SAMPLES,
    Adaptation,
    CheckReport,
    bounded_layers,
    run_checks,
    unadapted_layers,
)
from robustkit.evaluation.engine import Evaluation, attack_figures, evaluate_attack, prepare_attack
from robustkit.evaluation.fooling import FoolingReport, evaluate_fooling
from robustkit.predict import verdict_draws
from robustkit.registry import ATTACKS, DEFENSES
from robustkit.results.example_grid import example_strip
from robustkit.results.intervals import PROPORTIONS
from robustkit.results.norm_curve import stored_norms
from robustkit.results.per_class import per_class
from robustkit.results.records import run_metadata
from robustkit.results.store import pack
from robustkit.suites.spec import Cell, ModelEntry, Suite
from robustkit.threats import DEFAULT_NORM, default_eps
from robustkit.threats.budget import warn_if_covers_box
from robustkit.weights.checkpoint import read_record
from robustkit.weights.resolve import Provenance

log = logging.getLogger(__name__)
CARD_EXAMPLES = 4  # broken examples per cell kept for the leaderboard page's cards
_COLUMN_FIGURES = (
    "n",
    *PROPORTIONS,
    *(f"{p}_{end}" for p in PROPORTIONS for end in ("low", "high")),
    "median_norm",
    "n_unverified",
)


@dataclass
class CellResult:
    """What one cell gave: its record, the per-sample (or per-class) outcome, the attack as run (fitted)."""

    row: dict[str, Any]  # the store's cell row: one schema for every kind of run
    outcome: Evaluation | FoolingReport
    attack: Attack
    figures: dict[str, Any]  # every figure, flat (the row's columns and its ``extra``): what a table prints


def evaluate_cell(
    cell: Cell,
    model: nn.Module,
    data: ImageDataset,
    subset: IndexedSplit,
    *,
    device: torch.device,
    provenance: Provenance,
    source: tuple[nn.Module, Provenance] | None = None,
    attack: Attack | None = None,
    progress: bool = True,
    keep_examples: int = CARD_EXAMPLES,
) -> CellResult:
    """Fit (a data-fitted attack), attack and verify one cell; ``attack`` overrides the cell's (a given δ).

    With ``source`` the examples are crafted on it and scored on ``model`` (a transfer cell). A threat
    model without clean images seeks one fooling image per class instead (``FoolingReport``).
    """
    suite, spec = cell.suite, cell.attack
    if attack is None:
        attack = ATTACKS.build(spec.attack, eps=cell.eps, norm=spec.norm, seed=suite.seed, **spec.settings)
    attack.check_fits(data.info.input_shape)  # a budget that cannot run is refused before any warning about it
    warn_if_covers_box(attack.threat, data.info.input_shape)
    if not attack.threat.clean_images:
        return _fooling(cell, attack, model, data, device, provenance, progress)
    start = time.perf_counter()
    crafted_on = source[0] if source is not None else model
    unadapted = unadapted_layers(crafted_on, attack)
    for line in unadapted:  # said before any figure (or flag) is computed
        log.warning("warning: %s", line)
    bounded = bounded_layers(crafted_on, attack)  # a note, not a warning: the record and the CLI say it
    attack, fitted = prepare_attack(
        attack, crafted_on, data, fit_samples=suite.fit_samples, seed=suite.seed, progress=progress
    )
    result = evaluate_attack(
        model,
        subset,
        attack,
        batch_size=suite.batch_size,
        progress=progress,
        source=source[0] if source is not None else None,
        keep_examples=keep_examples,
    )
    figures = {
        **result.metrics(),
        **fitted,
        **attack_figures(attack, model, subset),
        "verify_draws": verdict_draws(model),
        **({"unadapted_layers": unadapted} if unadapted else {}),
        **({"bounded_layers": bounded} if bounded else {}),
    }
    row = cell_row(
        cell,
        attack,
        figures,
        device=device,
        provenance=provenance,
        seconds=time.perf_counter() - start,
        source=source[1] if source is not None else None,
    )
    row.update(clean_correct=pack(result.clean_correct), robust=pack(result.robust), examples=_strip(result.examples))
    row["extra"]["per_class"] = per_class(
        subset.labels.cpu().numpy(),
        result.clean_correct.cpu().numpy(),
        result.robust.cpu().numpy(),
        data.info.class_names,
    )
    if attack.minimum_norm:  # each sample's smallest verified norm: the whole ε-curve, recomputable from the row
        row["extra"]["norms"] = stored_norms(result.norms)
    if result.queries is not None and attack.access != "gradient":  # a black box's budget is queries: the count
        # each broken sample fell at gives robust accuracy at any smaller budget, recomputable from the row
        row["extra"]["queries"] = stored_norms(result.queries)
    return CellResult(row, result, attack, figures)


def _fooling(
    cell: Cell,
    attack: Attack,
    model: nn.Module,
    data: ImageDataset,
    device: torch.device,
    provenance: Provenance,
    progress: bool,
) -> CellResult:
    """A threat model without clean images: one image sought per class, in the cells' schema over classes.

    n is the number of classes, ``robust`` per class means no verified fooling image, robust accuracy
    is 1 − the fooling rate. The clean accuracy is null: no clean image is used. The cell's seconds are
    the sum of the per-class times (``class_seconds``), so the record agrees with itself.
    """
    report = evaluate_fooling(
        model, attack, tuple(data.info.input_shape), batch_size=cell.suite.batch_size, progress=progress
    )
    figures = {**report.metrics(), "clean_accuracy": None, **report.extra(), "verify_draws": verdict_draws(model)}
    row = cell_row(cell, attack, figures, device=device, provenance=provenance, seconds=report.total_seconds)
    every = torch.ones(len(report.classes), dtype=torch.bool)  # every class was sought
    found = report.images[report.passed]  # the card shows the fooling images found, one per class fooled
    row.update(
        clean_correct=pack(every),
        robust=pack(~report.passed),
        examples=example_strip(None, found) if len(found) else None,
    )
    return CellResult(row, report, attack, figures)


def cell_row(
    cell: Cell,
    attack: Attack,
    figures: dict[str, Any],
    *,
    device: torch.device,
    provenance: Provenance,
    seconds: float,
    source: Provenance | None = None,
) -> dict[str, Any]:
    """The one record builder: a cell's store row (its per-sample outcomes and examples are added by the caller).

    Figures that have no column of their own (fitting, fooling, ``verify_draws``, what a caller adds
    later) go to ``extra``, so every kind of run has the same columns. A figure that does not apply
    (NaN: a success rate with no sample attacked) is stored as None, in the columns as in ``extra``.
    Each proportion's 95 % interval (``{figure}_low``/``_high``) is the outcome's, computed from its counts.
    """
    suite, spec = cell.suite, cell.attack
    extra = {k: _plain(v) for k, v in figures.items() if k not in _COLUMN_FIGURES and k != "seconds"}
    return {
        "key": cell.key(provenance.identity, source.identity if source else None),
        "suite": suite.name,
        "dataset": suite.dataset,
        "entry": cell.entry.name,
        "model": cell.entry.model,
        "defense": cell.entry.defense,
        **provenance.record(),
        "attack": spec.label,
        "norm": spec.norm,
        "eps": cell.eps,
        "settings": {k: v for k, v in attack.settings().items() if k not in ("eps", "norm")},
        "n_samples": suite.n_samples,
        "sample_seed": suite.seed,
        **{k: _plain(figures[k]) for k in _COLUMN_FIGURES},
        "seconds": seconds,
        "extra": extra,
        **run_metadata(device, suite.seed),
        "training": entry_card(provenance.path),
        "clean_correct": None,
        "robust": None,
        "examples": None,
        "source": cell.source.name if cell.source is not None else None,
        "source_checkpoint_sha256": source.sha256 if source else None,
    }


def _plain(value: Any) -> Any:
    """NaN and ±∞ as None, so every output (JSON included) holds the figure as written."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def entry_card(path: Path | None) -> dict:
    """What a leaderboard card says about an entry's weights, from its checkpoint's record (empty if foreign)."""
    record = read_record(path) if path is not None else None
    if record is None:
        return {}
    history = record.train_settings.get("history") or []
    return {
        "architecture": record.model,
        "defense": record.defense,
        "defense_settings": record.defense_settings,
        "epochs": record.epochs,
        "train_seconds": sum(h.get("seconds", 0.0) for h in history) or None,
        "pretrained": record.train_settings.get("pretrained"),
        "trained": record.created,
    }


def entry_defense(entry: ModelEntry, data: ImageDataset) -> Defense | None:
    """An entry's defense built from its settings (norm L∞ and the field's ε where not given)."""
    if entry.defense == "none":
        return None
    settings = dict(entry.defense_settings)
    norm = settings.setdefault("norm", DEFAULT_NORM)
    settings.setdefault("eps", default_eps(norm, data.info.input_shape[0]))
    return DEFENSES.build(entry.defense, **settings)


def check_key(
    suite: Suite,
    entry: ModelEntry,
    sha: str,
    norm: str,
    eps: float,
    adaptation: Adaptation = Adaptation(),
    level: str | None = None,
) -> str:
    """Store key of an entry's check run: everything its outcome depends on, hashed like a cell's (``sha``:
    the weights' ``Provenance.identity``)."""
    text = {
        "dataset": suite.dataset,
        "dataset_options": suite.dataset_options,
        "n_samples": suite.n_samples,
        "seed": suite.seed,
        "n": suite.check_samples,
        "entry": entry.describe(),
        "checkpoint_sha256": sha,
        "checks_version": CHECKS_VERSION,
        "norm": norm,
        "eps": eps,
        "level": level or suite.checks,
        "adaptation": adaptation.settings(),
    }
    return hashlib.sha256(json.dumps(text, sort_keys=True, default=str).encode()).hexdigest()[:24]


def check_entry(
    suite: Suite,
    entry: ModelEntry,
    model: nn.Module,
    subset: IndexedSplit,
    norm: str,
    eps: float,
    provenance: Provenance,
    *,
    adaptation: Adaptation = Adaptation(),
    level: str | None = None,
    white: Tensor | None = None,
) -> tuple[CheckReport, dict[str, Any]]:
    """The gradient-masking checks of ``level`` [the suite's] on the first ``check_samples`` of the subset
    (at most ``DEFAULT_SAMPLES`` for the default level), and their store row.

    ``white`` (per sample of ``subset``: robust under the evaluated attack) is what the default level's
    black-box probe is compared with; without it the checks run PGD themselves.
    """
    start = time.perf_counter()
    level = level or suite.checks
    n = min(suite.check_samples, DEFAULT_SAMPLES) if level == "default" else suite.check_samples
    chosen = subset.choose(min(n, len(subset)), seed=suite.seed)
    take = subset if chosen is None else subset.take(chosen)
    if white is not None and chosen is not None:
        white = white[chosen.to(white.device)]
    report = run_checks(
        model,
        take,
        norm=norm,
        eps=eps,
        seed=suite.seed,
        batch_size=suite.batch_size,
        level=level,
        adaptation=adaptation,
        white=white,
    )
    row = {
        "key": check_key(suite, entry, provenance.identity, norm, eps, adaptation, level),
        "suite": suite.name,
        "entry": entry.name,
        "checkpoint_sha256": provenance.sha256,
        "weights_sha256": provenance.weights_sha256,
        "norm": norm,
        "eps": eps,
        "n": len(take),
        "summary": report.summary(),
        "details": report.to_dict(),
        "seconds": time.perf_counter() - start,
        "created": run_metadata(torch.device("cpu"), suite.seed)["created"],
    }
    return report, row


def _strip(examples: dict) -> bytes | None:
    if not examples or len(examples["clean"]) == 0:
        return None
    return example_strip(examples["clean"][:CARD_EXAMPLES], examples["adversarial"][:CARD_EXAMPLES])
