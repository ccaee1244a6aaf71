"""The benchmark runner: a suite's cells, each evaluated by the shared engine and committed to the store.

Cells are independent: each attack runs on every correctly classified sample of the fixed subset and
its per-sample outcomes are stored, so the worst case over attacks is their per-sample AND
(computed by the leaderboard), any cell can be resumed or sharded on its own, and every attack's
own robust accuracy is exact.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from robustkit.data import get_dataset
from robustkit.data.base import ImageDataset
from robustkit.evaluation.cell import check_entry, check_key, entry_defense, evaluate_cell
from robustkit.evaluation.checks import Adaptation
from robustkit.evaluation.corruption_run import corruption_row, evaluate_entry
from robustkit.progress import progress_bar
from robustkit.results.store import ResultStore
from robustkit.suites.spec import Cell, ModelEntry, Suite
from robustkit.training import distributed
from robustkit.weights.cache import cache_path
from robustkit.weights.resolve import Provenance, locate, resolve_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSummary:
    evaluated: int
    skipped: int
    seconds: float
    store: Path
    keys: frozenset[str] = frozenset()  # this run's cells and checks: what its leaderboard is made of


def run_suite(
    suite: Suite,
    store_path: str | Path,
    *,
    device: torch.device,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    allow_train: bool = True,
) -> RunSummary:
    """Evaluate every cell of ``suite`` (or of one shard) that ``store_path`` does not hold yet.

    Per model entry: its attack cells, then its gradient-masking checks (``suite.checks``), then its
    randomized-smoothing certification (``certify:``, rank 0, into the store's ``certified`` table), then the
    transfer cells that score it (crafted on each entry in turn). Under torchrun the ranks split each
    cell's samples (see ``evaluate_attack``); rank 0 alone writes the store, and every skip decision
    is rank 0's, so all ranks walk the same cells. Without ``allow_train`` a missing checkpoint is
    an error instead of a training run.
    """
    start = time.perf_counter()
    data = get_dataset(suite.dataset, **suite.dataset_options)
    subset = data.test.subset(suite.n_samples, seed=suite.seed)
    cells = suite.cells(shard)
    models = _Models(data, device, allow_train)
    evaluated = skipped = 0
    keys: set[str] = set()
    quiet = not progress or not distributed.is_main()
    # Only rank 0 opens the store: every decision is rank 0's (``agree``), so the others have nothing
    # to read there, and ranks opening one new SQLite file at once race for its creation and its
    # switch to WAL (retried in ``ResultStore``, but a wait that load can stretch past any timeout).
    with ResultStore(store_path) if distributed.is_main() else nullcontext() as store:

        def held(key: str | None, table: str = "cells") -> bool:
            return store is not None and store.has(key, table)

        bar = progress_bar(total=len(cells), desc=f"suite {suite.name}", unit="cell", enabled=not quiet)
        for number, entry in enumerate(suite.models):
            mine = [c for c in cells if c.entry is entry]
            mine_checks = suite.checks != "none" and number % shard[1] == shard[0]
            if store is not None:
                _rekey_older_rows(store, suite, entry, mine, models, mine_checks)
            checks = _check_keys(suite, entry, models.cached_sha(entry)) if mine_checks else {}
            cell_keys = _keys(mine, models)
            own = number % shard[1] == shard[0]  # an entry's checks, certification and corruptions belong to one shard
            certified = _certify_key(suite, entry, models.cached_sha(entry)) if own else None
            mine_corruptions = suite.corruptions is not None and own
            corrupted = _corruption_key(suite, entry, models.cached_sha(entry)) if mine_corruptions else None
            if distributed.agree(
                all(held(k) for k in cell_keys)
                and all(held(k, "checks") for k in checks.values())
                and (entry.certify is None or not own or held(certified, "certified"))
                and (not mine_corruptions or held(corrupted, "corruptions")),
                device,
            ):
                keys.update(
                    cell_keys, checks.values(), [k for k in (certified, corrupted) if k]
                )  # all present in the store
                skipped += len(mine)
                bar.update(len(mine))
                continue
            model, provenance = models.get(entry)
            sha = provenance.identity
            for cell in mine:
                bar.set_postfix_str(cell.title)
                source_sha = models.cached_sha(cell.source) if cell.source is not None else None
                known = cell.source is None or source_sha is not None  # an untrained source: the cell cannot be done
                if distributed.agree(known and held(cell.key(sha, source_sha)), device):
                    keys.add(cell.key(sha, source_sha))
                    skipped += 1
                else:
                    source = models.get(cell.source)[:2] if cell.source is not None else None
                    row = evaluate_cell(
                        cell,
                        model,
                        data,
                        subset,
                        device=device,
                        provenance=provenance,
                        source=source,
                        progress=progress and not quiet,
                    ).row
                    keys.add(row["key"])
                    if distributed.is_main():
                        store.put(row)
                    evaluated += 1
                bar.update(1)
            for (norm, eps, adaptation), key in _check_keys(suite, entry, sha).items() if mine_checks else ():
                keys.add(key)
                if not distributed.agree(held(key, "checks"), device):
                    bar.set_postfix_str(f"{entry.name} checks {norm} ε={eps:.4g}")
                    row = check_entry(suite, entry, model, subset, norm, eps, provenance, adaptation=adaptation)[1]
                    if distributed.is_main():
                        store.put(row, "checks")
            certified = _certify_key(suite, entry, sha) if own else None
            if certified is not None:
                keys.add(certified)
                if not held(certified, "certified") and distributed.is_main():
                    bar.set_postfix_str(f"{entry.name} certify σ={entry.certify.sigma:g}")
                    store.put(
                        {
                            **certify_entry(entry, model, provenance, data, suite, progress=not quiet),
                            "key": certified,
                            "suite": suite.name,
                            "entry": entry.name,
                        },
                        "certified",
                    )
            if mine_corruptions:
                corrupted = _corruption_key(suite, entry, sha)
                keys.add(corrupted)
                if not distributed.agree(held(corrupted, "corruptions"), device):
                    bar.set_postfix_str(f"{entry.name} corruptions")
                    report = evaluate_entry(suite, model, subset, progress=progress and not quiet)
                    if distributed.is_main():
                        store.put(corruption_row(suite, entry, provenance, report), "corruptions")
            if not suite.transfer:
                models.release(entry)  # keep memory flat: only transfer sources are needed again
        bar.close()
        if distributed.is_main():
            store.add_members(suite.name, keys)  # reused cells belong to this suite too, whoever evaluated them
    return RunSummary(evaluated, skipped, time.perf_counter() - start, Path(store_path), frozenset(keys))


class _Models:
    """Each entry's model resolved (loaded, or trained where allowed) once per run, with its provenance."""

    def __init__(self, data: ImageDataset, device: torch.device, allow_train: bool = True) -> None:
        self.data, self.device, self.allow_train = data, device, allow_train
        self._loaded: dict[str, tuple[nn.Module, Provenance]] = {}
        self._found: dict[str, Provenance | None] = {}

    def located(self, entry: ModelEntry) -> Provenance | None:
        """The weights' provenance if they exist already, without loading the model (hashed once per entry)."""
        if self._found.get(entry.name) is None:
            self._found[entry.name] = locate(entry.model, self.data, **_spec(entry, self.data))
        return self._found[entry.name]

    def cached_sha(self, entry: ModelEntry) -> str | None:
        """What keys the entry's cells (``Provenance.identity``), if its weights exist already."""
        found = self.located(entry)
        return found.identity if found is not None else None

    def get(self, entry: ModelEntry) -> tuple[nn.Module, Provenance]:
        if entry.name not in self._loaded:
            found = resolve_model(
                entry.model, self.data, device=self.device, allow_train=self.allow_train, **_spec(entry, self.data)
            )  # may train it
            self._found[entry.name] = found.provenance
            self._loaded[entry.name] = (found.model, found.provenance)
        return self._loaded[entry.name]

    def release(self, entry: ModelEntry) -> None:
        self._loaded.pop(entry.name, None)


def _spec(entry: ModelEntry, data: ImageDataset) -> dict:
    """The resolver's settings for an entry: its recipe is exact (``{}`` is the default recipe)."""
    return {
        "defense": entry_defense(entry, data),
        "checkpoint": entry.checkpoint,
        "weights": entry.weights,
        "recipe": dict(entry.train),
    }


def _keys(cells: list[Cell], models: _Models) -> list[str | None]:
    """Store keys of cells whose checkpoints exist already; a missing one is None (never in the store)."""
    keys = []
    for cell in cells:
        sha = models.cached_sha(cell.entry)
        source = models.cached_sha(cell.source) if cell.source is not None else None
        missing = sha is None or (cell.source is not None and source is None)
        keys.append(None if missing else cell.key(sha, source))
    return keys


LEGACY_DIGITS = 16  # before issue 33 a key named the file by its SHA-256's first 16 hex digits


def _rekey_older_rows(
    store: ResultStore, suite: Suite, entry: ModelEntry, cells: list[Cell], models: _Models, checks: bool
) -> int:
    """Move the entry's rows stored under keys of the file's hash prefix (before issue 33) to keys of its
    weights' digest, where the file at hand still has that prefix: it is the file they were evaluated on.
    Rows whose file is gone or changed keep their old keys, and their cells are evaluated again."""
    found = models.located(entry)
    if found is None or found.sha256 is None:
        return 0
    moved = 0
    for cell in cells:
        source = models.located(cell.source) if cell.source is not None else None
        if cell.source is not None and (source is None or source.sha256 is None):
            continue
        old = cell.key(found.sha256[:LEGACY_DIGITS], source.sha256[:LEGACY_DIGITS] if source else None)
        moved += store.rekey(
            old,
            cell.key(found.identity, source.identity if source else None),
            **found.record(),
            source_checkpoint_sha256=source.sha256 if source else None,
        )
    for point in suite.check_points() if checks else ():
        moved += store.rekey(
            check_key(suite, entry, found.sha256[:LEGACY_DIGITS], *point),
            check_key(suite, entry, found.identity, *point),
            "checks",
            checkpoint_sha256=found.sha256,
            weights_sha256=found.weights_sha256,
        )
    if moved:
        log.info(
            "%s: %d stored rows keyed by the file's hash prefix re-keyed by the weights' digest", entry.name, moved
        )
    return moved


def _certify_key(suite: Suite, entry: ModelEntry, sha: str | None) -> str | None:
    """Store key of an entry's certification (None where it has none, or its weights do not exist yet)."""
    return None if entry.certify is None or sha is None else entry.certify.key(suite, entry, sha)


def certify_entry(
    entry: ModelEntry,
    model: nn.Module,
    provenance: Provenance,
    data: ImageDataset,
    suite: Suite,
    *,
    progress: bool = True,
) -> dict:
    """The entry's ``certify:`` run (``robustkit.certification``) on its model: the record of its store row."""
    from robustkit.certification.api import certify_loaded
    from robustkit.certification.empirical import SmoothAdv
    from robustkit.certification.smoothing import Smoothing

    spec = entry.certify
    smoothing = Smoothing(sigma=spec.sigma, n=spec.n, n0=spec.n0, alpha=spec.alpha)
    report = certify_loaded(
        model,
        provenance,
        data,
        smoothing=smoothing,
        n_samples=spec.n_samples,
        seed=suite.seed,
        radii=list(spec.radii) if spec.radii is not None else None,
        attack=SmoothAdv() if spec.attack else None,
        progress=progress,
        about={"model": entry.model, "defense": entry.defense, "defense_settings": entry.defense_settings},
    )
    return report.record


def _corruption_key(suite: Suite, entry: ModelEntry, sha: str | None) -> str | None:
    """Store key of an entry's corruption run (None while its weights do not exist, or the suite has none)."""
    return None if sha is None or suite.corruptions is None else suite.corruptions.key(suite, entry, sha)


def _check_keys(suite: Suite, entry: ModelEntry, sha: str | None) -> dict[tuple[str, float, Adaptation], str | None]:
    """Store keys of an entry's check runs (None while its weights do not exist)."""
    return {point: None if sha is None else check_key(suite, entry, sha, *point) for point in suite.check_points()}


def _checkpoint_for(entry: ModelEntry, data: ImageDataset) -> Path:
    """The given checkpoint, or the cache path of (model, defense, ε, training overrides)."""
    return entry.checkpoint or cache_path(data, entry.model, entry_defense(entry, data), dict(entry.train))
