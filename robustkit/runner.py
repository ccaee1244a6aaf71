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
from robustkit.checkpoint import load_model
from robustkit.data import get_dataset
from robustkit.data.base import ImageDataset, Split
from robustkit.evaluate import evaluate_attack, prepare_attack
from robustkit.paths import checkpoint_path
from robustkit.pipeline import train_and_save
from robustkit.records import file_sha256, run_metadata
from robustkit.registry import ATTACKS, DEFENSES
from robustkit.store import ResultStore, pack
from robustkit.suite import Cell, ModelEntry, Suite
from robustkit.threat import default_eps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSummary:
    evaluated: int
    skipped: int
    seconds: float
    store: Path


def run_suite(suite: Suite, store_path: str | Path, *, device: torch.device, shard: tuple[int, int] = (0, 1),
              progress: bool = True) -> RunSummary:  # fmt: skip
    """Evaluate every cell of ``suite`` (or of one shard) that ``store_path`` does not hold yet.

    Under torchrun the ranks split each cell's samples (see ``evaluate_attack``); rank 0 alone writes
    the store, and every skip decision is rank 0's, so all ranks walk the same cells.
    """
    start = time.perf_counter()
    data = get_dataset(suite.dataset, **suite.dataset_options)
    subset = data.test.subset(suite.n_samples, seed=suite.seed)
    cells = suite.cells(shard)
    evaluated = skipped = 0
    with ResultStore(store_path) as store:
        quiet = not progress or not distributed.is_main()
        bar = tqdm(total=len(cells), desc=f"suite {suite.name}", unit="cell", disable=True if quiet else None)
        for entry in suite.models:
            mine = [c for c in cells if c.entry is entry]
            if not mine:
                continue
            path = _checkpoint_for(entry, data)
            cached_sha = file_sha256(path) if path.is_file() else None
            if distributed.agree(cached_sha is not None and all(store.has(c.key(cached_sha)) for c in mine), device):
                skipped += len(mine)
                bar.update(len(mine))
                continue
            model, path = _model_for(entry, data, path, device, suite.seed)
            sha = cached_sha or file_sha256(path)
            for cell in mine:
                bar.set_postfix_str(cell.title)
                key = cell.key(sha)
                if distributed.agree(store.has(key), device):
                    skipped += 1
                else:
                    row = _evaluate_cell(cell, model, data, subset, device, path, sha, key, progress and not quiet)
                    if distributed.is_main():
                        store.put(row)
                    evaluated += 1
                bar.update(1)
        bar.close()
    return RunSummary(evaluated, skipped, time.perf_counter() - start, Path(store_path))


def _checkpoint_for(entry: ModelEntry, data: ImageDataset) -> Path:
    """The given checkpoint, or the cache path of (model, defense, ε, training overrides)."""
    if entry.checkpoint is not None:
        return entry.checkpoint
    defense = _defense(entry, data)
    tag = defense.tag() if defense else None
    if entry.train:
        digest = hashlib.sha256(json.dumps(entry.train, sort_keys=True).encode()).hexdigest()[:8]
        tag = f"{tag}-recipe{digest}" if tag else f"recipe{digest}"
    return checkpoint_path(data.info.name, entry.model, entry.defense, tag=tag)


def _defense(entry: ModelEntry, data: ImageDataset):
    if entry.defense == "none":
        return None
    settings = dict(entry.defense_settings)
    norm = settings.setdefault("norm", "linf")
    settings.setdefault("eps", default_eps(norm, data.info.input_shape[0]))
    return DEFENSES.build(entry.defense, **settings)


def _model_for(entry: ModelEntry, data: ImageDataset, path: Path, device: torch.device, seed: int) -> tuple[nn.Module, Path]:
    if path.is_file():
        model, _ = load_model(path, model=entry.model, info=data.info, device=device)
        return model, path
    log.info("training %s for the suite (no checkpoint at %s)", entry.name, path)
    overrides = dict(entry.train)
    model, _, _, path = train_and_save(entry.model, data, device=device, defense=_defense(entry, data), seed=seed,
                                       out=path, n_train=overrides.pop("n_train", None), **overrides)  # fmt: skip
    return model.to(device).eval(), path


def _evaluate_cell(cell: Cell, model: nn.Module, data: ImageDataset, subset: Split, device: torch.device, path: Path,
                   sha: str, key: str, progress: bool) -> dict:  # fmt: skip
    suite, spec = cell.suite, cell.attack
    attack = ATTACKS.build(spec.attack, eps=cell.eps, norm=spec.norm, seed=suite.seed, **spec.settings)
    start = time.perf_counter()
    attack, extra = prepare_attack(attack, model, data.train, fit_samples=suite.fit_samples, seed=suite.seed,
                                   progress=progress)  # fmt: skip
    result = evaluate_attack(model, subset.images, subset.labels, attack, batch_size=suite.batch_size, progress=progress)
    extra.update(attack.extra_metrics(model, subset.images.to(device)))
    m = result.metrics()
    meta = run_metadata(device, suite.seed)
    return {
        "key": key, "suite": suite.name, "dataset": suite.dataset, "entry": cell.entry.name, "model": cell.entry.model,
        "defense": cell.entry.defense, "checkpoint": str(path), "checkpoint_sha256": sha, "attack": spec.attack,
        "norm": spec.norm, "eps": cell.eps, "settings": {k: v for k, v in attack.settings().items() if k not in ("eps", "norm")},
        "n_samples": suite.n_samples, "sample_seed": suite.seed, "n": m["n"], "clean_accuracy": m["clean_accuracy"],
        "robust_accuracy": m["robust_accuracy"], "attack_success_rate": m["attack_success_rate"],
        "median_norm": m["median_norm"], "n_unverified": m["n_unverified"], "seconds": time.perf_counter() - start,
        "extra": extra, **meta, "clean_correct": pack(result.clean_correct), "robust": pack(result.robust),
    }  # fmt: skip
