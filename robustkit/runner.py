"""The benchmark runner: a suite's cells, each evaluated by the shared engine and committed to the store.

Cells are independent: each attack runs on every correctly classified sample of the fixed subset and
its per-sample outcomes are stored, so the worst case over attacks is their per-sample AND
(computed by the leaderboard), any cell can be resumed or sharded on its own, and every attack's
own robust accuracy is exact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from robustkit import distributed
from robustkit.budget import warn_if_covers_box
from robustkit.checks import CHECKS_VERSION, run_checks
from robustkit.checkpoint import read_record
from robustkit.data import get_dataset
from robustkit.data.base import ImageDataset, IndexedSplit
from robustkit.evaluate import attack_figures, evaluate_attack, prepare_attack
from robustkit.fooling_eval import evaluate_fooling
from robustkit.example_grid import example_strip
from robustkit.pipeline import cache_path
from robustkit.predict import accuracy, verdict_draws
from robustkit.records import run_metadata
from robustkit.registry import ATTACKS, DEFENSES
from robustkit.resolve import Provenance, locate, resolve_model
from robustkit.store import ResultStore, pack
from robustkit.suite import Cell, ModelEntry, Suite
from robustkit.threat import default_eps

log = logging.getLogger(__name__)
CARD_EXAMPLES = 4  # broken examples per cell kept for the leaderboard page's cards


@dataclass(frozen=True)
class RunSummary:
    evaluated: int
    skipped: int
    seconds: float
    store: Path
    keys: frozenset[str] = frozenset()  # this run's cells and checks: what its leaderboard is made of


def run_suite(suite: Suite, store_path: str | Path, *, device: torch.device, shard: tuple[int, int] = (0, 1),
              progress: bool = True, allow_train: bool = True) -> RunSummary:  # fmt: skip
    """Evaluate every cell of ``suite`` (or of one shard) that ``store_path`` does not hold yet.

    Per model entry: its attack cells, then its gradient-masking checks (``suite.checks``), then the
    transfer cells that score it (crafted on each entry in turn). Under torchrun the ranks split each
    cell's samples (see ``evaluate_attack``); rank 0 alone writes the store, and every skip decision
    is rank 0's, so all ranks walk the same cells. Without ``allow_train`` a missing checkpoint is
    an error instead of a training run.
    """
    start = time.perf_counter()
    data = get_dataset(suite.dataset, **suite.dataset_options)
    subset = data.test.subset(suite.n_samples, seed=suite.seed)
    cells = suite.cells(shard)
    models = _Models(data, device, suite.seed, allow_train)
    evaluated = skipped = 0
    keys: set[str] = set()
    quiet = not progress or not distributed.is_main()
    with ResultStore(store_path) as store:
        bar = tqdm(total=len(cells), desc=f"suite {suite.name}", unit="cell", disable=True if quiet else None)
        for number, entry in enumerate(suite.models):
            mine = [c for c in cells if c.entry is entry]
            checks = _check_keys(suite, entry, models.cached_sha(entry)) if suite.checks and number % shard[1] == shard[0] else {}
            cell_keys = _keys(mine, models)
            if distributed.agree(all(store.has(k) for k in cell_keys) and
                                 all(store.has(k, "checks") for k in checks.values()), device):  # fmt: skip
                keys.update(cell_keys, checks.values())  # all present in the store, so none is None
                skipped += len(mine)
                bar.update(len(mine))
                continue
            model, provenance, sha = models.get(entry)
            for cell in mine:
                bar.set_postfix_str(cell.title)
                source_sha = models.cached_sha(cell.source) if cell.source is not None else None
                known = cell.source is None or source_sha is not None  # an untrained source: the cell cannot be done
                if distributed.agree(known and store.has(cell.key(sha, source_sha)), device):
                    keys.add(cell.key(sha, source_sha))
                    skipped += 1
                else:
                    source = models.get(cell.source) if cell.source is not None else None
                    key = cell.key(sha, source[2] if source else None)
                    keys.add(key)
                    row = _evaluate_cell(cell, model, data, subset, device, provenance, sha, key, progress and not quiet, source)
                    if distributed.is_main():
                        store.put(row)
                    evaluated += 1
                bar.update(1)
            for (norm, eps), key in _check_keys(suite, entry, sha).items() if checks else ():
                keys.add(key)
                if not distributed.agree(store.has(key, "checks"), device):
                    bar.set_postfix_str(f"{entry.name} checks {norm} ε={eps:.4g}")
                    row = _run_checks(suite, entry, model, subset, norm, eps, sha, key)
                    if distributed.is_main():
                        store.put(row, "checks")
            if not suite.transfer:
                models.release(entry)  # keep memory flat: only transfer sources are needed again
        bar.close()
        if distributed.is_main():
            store.add_members(suite.name, keys)  # reused cells belong to this suite too, whoever evaluated them
    return RunSummary(evaluated, skipped, time.perf_counter() - start, Path(store_path), frozenset(keys))


class _Models:
    """Each entry's model resolved (loaded, or trained where allowed) once per run, with its provenance."""

    def __init__(self, data: ImageDataset, device: torch.device, seed: int, allow_train: bool = True) -> None:
        self.data, self.device, self.seed, self.allow_train = data, device, seed, allow_train
        self._loaded: dict[str, tuple[nn.Module, Provenance]] = {}
        self._sha: dict[str, str | None] = {}

    def cached_sha(self, entry: ModelEntry) -> str | None:
        """The weights' hash if they exist already, without loading the model (hashed once per entry)."""
        if self._sha.get(entry.name) is None:
            found = locate(entry.model, self.data, **_spec(entry, self.data))
            self._sha[entry.name] = found.sha256 if found is not None else None
        return self._sha[entry.name]

    def get(self, entry: ModelEntry) -> tuple[nn.Module, Provenance, str]:
        if entry.name not in self._loaded:
            found = resolve_model(entry.model, self.data, device=self.device, seed=self.seed,
                                  allow_train=self.allow_train, **_spec(entry, self.data))  # may train it
            self._sha[entry.name] = found.provenance.sha256
            self._loaded[entry.name] = (found.model, found.provenance)
        model, provenance = self._loaded[entry.name]
        return model, provenance, provenance.sha256

    def release(self, entry: ModelEntry) -> None:
        self._loaded.pop(entry.name, None)


def _spec(entry: ModelEntry, data: ImageDataset) -> dict:
    """The resolver's settings for an entry: its recipe is exact (``{}`` is the default recipe)."""
    return {"defense": _defense(entry, data), "checkpoint": entry.checkpoint, "weights": entry.weights,
            "recipe": dict(entry.train)}  # fmt: skip


def _keys(cells: list[Cell], models: _Models) -> list[str | None]:
    """Store keys of cells whose checkpoints exist already; a missing one is None (never in the store)."""
    keys = []
    for cell in cells:
        sha = models.cached_sha(cell.entry)
        source = models.cached_sha(cell.source) if cell.source is not None else None
        missing = sha is None or (cell.source is not None and source is None)
        keys.append(None if missing else cell.key(sha, source))
    return keys


def _check_keys(suite: Suite, entry: ModelEntry, sha: str | None) -> dict[tuple[str, float], str | None]:
    """Store keys of an entry's check runs: everything their outcome depends on, hashed like a cell's."""
    text = {"dataset": suite.dataset, "dataset_options": suite.dataset_options, "n_samples": suite.n_samples,
            "seed": suite.seed, "n": suite.check_samples, "entry": entry.describe(), "checkpoint_sha256": sha,
            "checks_version": CHECKS_VERSION}  # fmt: skip
    return {(norm, eps): None if sha is None else hashlib.sha256(
                json.dumps({**text, "norm": norm, "eps": eps}, sort_keys=True, default=str).encode()).hexdigest()[:24]
            for norm, eps in suite.check_points()}  # fmt: skip


def _run_checks(suite: Suite, entry: ModelEntry, model: nn.Module, subset: IndexedSplit, norm: str, eps: float, sha: str,
                key: str) -> dict:  # fmt: skip
    start = time.perf_counter()
    take = subset.subset(min(suite.check_samples, len(subset)), seed=suite.seed)
    report = run_checks(model, take, norm=norm, eps=eps, seed=suite.seed, batch_size=suite.batch_size)
    return {"key": key, "suite": suite.name, "entry": entry.name, "checkpoint_sha256": sha, "norm": norm, "eps": eps,
            "n": len(take), "summary": report.summary(), "details": report.to_dict(),
            "seconds": time.perf_counter() - start, "created": run_metadata(torch.device("cpu"), suite.seed)["created"]}  # fmt: skip


def _checkpoint_for(entry: ModelEntry, data: ImageDataset) -> Path:
    """The given checkpoint, or the cache path of (model, defense, ε, training overrides)."""
    return entry.checkpoint or cache_path(data, entry.model, _defense(entry, data), dict(entry.train))


def _defense(entry: ModelEntry, data: ImageDataset):
    if entry.defense == "none":
        return None
    settings = dict(entry.defense_settings)
    norm = settings.setdefault("norm", "linf")
    settings.setdefault("eps", default_eps(norm, data.info.input_shape[0]))
    return DEFENSES.build(entry.defense, **settings)


def _evaluate_cell(cell: Cell, model: nn.Module, data: ImageDataset, subset: IndexedSplit, device: torch.device,
                   provenance: Provenance, sha: str, key: str, progress: bool, source: tuple[nn.Module, Provenance, str] | None = None) -> dict:  # fmt: skip
    suite, spec = cell.suite, cell.attack
    attack = ATTACKS.build(spec.attack, eps=cell.eps, norm=spec.norm, seed=suite.seed, **spec.settings)
    warn_if_covers_box(spec.norm, cell.eps, data.info.input_shape)
    if not attack.threat.clean_images:
        return _fooling_cell(cell, attack, model, data, subset, device, provenance, sha, key, progress)
    start = time.perf_counter()
    crafted_on = source[0] if source is not None else model
    attack, extra = prepare_attack(attack, crafted_on, data.train, fit_samples=suite.fit_samples, seed=suite.seed,
                                   progress=progress)  # fmt: skip
    result = evaluate_attack(model, subset, attack, batch_size=suite.batch_size, progress=progress,
                             source=source[0] if source is not None else None, keep_examples=CARD_EXAMPLES)  # fmt: skip
    extra.update(attack_figures(attack, model, subset), verify_draws=verdict_draws(model))
    row = _row(cell, attack, result.metrics(), device, provenance, sha, key, time.perf_counter() - start, extra)
    return {**row, "clean_correct": pack(result.clean_correct), "robust": pack(result.robust),
            "source": cell.source.name if cell.source is not None else None,
            "source_checkpoint_sha256": source[2] if source is not None else None, "examples": _strip(result.examples)}  # fmt: skip


def _fooling_cell(cell: Cell, attack, model: nn.Module, data: ImageDataset, subset: IndexedSplit, device: torch.device,
                  provenance: Provenance, sha: str, key: str, progress: bool) -> dict:  # fmt: skip
    """A threat model without clean images: one image sought per class, in the cells' schema over classes.

    n is the number of classes, ``robust`` per class means no verified fooling image, robust accuracy
    is 1 − the fooling rate; the clean accuracy is the model's on the suite's subset, as in its other cells.
    """
    start = time.perf_counter()
    report = evaluate_fooling(model, attack, tuple(data.info.input_shape), batch_size=cell.suite.batch_size,
                              progress=progress)  # fmt: skip
    m = {**report.metrics(), "clean_accuracy": accuracy(model, subset, batch_size=cell.suite.batch_size)}
    extra = {**report.extra(), "fooling_rate": report.fooling_rate, "verify_draws": verdict_draws(model)}
    row = _row(cell, attack, m, device, provenance, sha, key, time.perf_counter() - start, extra)
    every = torch.ones(len(report.classes), dtype=torch.bool)  # every class was sought
    return {**row, "clean_correct": pack(every), "robust": pack(~report.passed), "source": None,
            "source_checkpoint_sha256": None, "examples": None}  # fmt: skip


def _row(cell: Cell, attack, m: dict, device: torch.device, provenance: Provenance, sha: str, key: str, seconds: float,
         extra: dict) -> dict:  # fmt: skip
    """A cell's store row apart from its per-sample outcomes, source and examples."""
    suite, spec = cell.suite, cell.attack
    return {
        "key": key, "suite": suite.name, "dataset": suite.dataset, "entry": cell.entry.name, "model": cell.entry.model,
        "defense": cell.entry.defense, "checkpoint": str(provenance.path) if provenance.path else None, "checkpoint_sha256": sha, "attack": spec.label,
        "norm": spec.norm, "eps": cell.eps, "settings": {k: v for k, v in attack.settings().items() if k not in ("eps", "norm")},
        "n_samples": suite.n_samples, "sample_seed": suite.seed, "n": m["n"], "clean_accuracy": m["clean_accuracy"],
        "robust_accuracy": m["robust_accuracy"], "attack_success_rate": m["attack_success_rate"],
        "median_norm": m["median_norm"], "n_unverified": m["n_unverified"], "seconds": seconds,
        "extra": extra, **run_metadata(device, suite.seed), "training": entry_card(provenance.path),
        "weights": provenance.description,
    }  # fmt: skip


def entry_card(path: Path | None) -> dict:
    """What a leaderboard card says about an entry's weights, from its checkpoint's record (empty if foreign)."""
    record = read_record(path) if path is not None else None
    if record is None:
        return {}
    history = record.train_settings.get("history") or []
    return {"architecture": record.model, "defense": record.defense, "defense_settings": record.defense_settings,
            "epochs": record.epochs, "train_seconds": sum(h.get("seconds", 0.0) for h in history) or None,
            "pretrained": record.train_settings.get("pretrained"), "trained": record.created}  # fmt: skip


def _strip(examples: dict) -> bytes | None:
    if not examples or len(examples["clean"]) == 0:
        return None
    return example_strip(examples["clean"], examples["adversarial"])
