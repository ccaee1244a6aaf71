"""Common corruptions of one model entry: the use case the runner, ``robustkit corruptions`` and Python share.

``corruption_row`` evaluates an entry of a suite (generated corruptions, or a precomputed folder) and
returns its results-store row; ``evaluate_model_corruptions`` is that for one model, as a one-entry
suite, with the undefended entry of the same architecture as mCE's baseline where the model is defended.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustkit.corruptions.evaluate import CorruptionOptions, evaluate_corruptions
from robustkit.corruptions.folder import evaluate_folder
from robustkit.corruptions.report import CorruptionReport
from robustkit.data import get_dataset
from robustkit.data.base import ImageDataset, IndexedSplit
from robustkit.errors import ConfigError
from robustkit.evaluation.api import ModelOptions, RunOptions, _device, _entry, _obtain
from robustkit.modes import eval_mode
from robustkit.predict import predict
from robustkit.results.records import run_metadata
from robustkit.suites.spec import CorruptionEntry, ModelEntry, Suite
from robustkit.threats import parse_eps
from robustkit.weights.resolve import Provenance


def evaluate_entry(suite: Suite, net: nn.Module, subset: IndexedSplit, *, progress: bool = True) -> CorruptionReport:
    """The suite's corruptions (``suite.corruptions``) of ``net`` on the suite's fixed subset."""
    spec = suite.corruptions or CorruptionEntry()
    split = subset.load()
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    images, labels = split.images.to(device), split.labels
    options = CorruptionOptions(
        names=spec.names, severities=spec.severities, seed=suite.seed, batch_size=suite.batch_size, progress=progress
    )
    with eval_mode(net):
        if spec.folder is None:
            return evaluate_corruptions(net, images, labels, options)
        clean = (predict(net, images, batch_size=suite.batch_size).cpu() == labels).numpy()
        return evaluate_folder(net, spec.folder, suite.n_samples, options, clean=clean)


def corruption_row(suite: Suite, entry: ModelEntry, provenance: Provenance, report: CorruptionReport) -> dict[str, Any]:
    """The store's ``corruptions`` row of an entry's report (its bits in ``details``)."""
    interval = report.mean_interval()
    return {
        "key": (suite.corruptions or CorruptionEntry()).key(suite, entry, provenance.identity),
        "suite": suite.name,
        "dataset": suite.dataset,
        "entry": entry.name,
        "model": entry.model,
        "defense": entry.defense,
        "checkpoint_sha256": provenance.sha256,
        "weights_sha256": provenance.weights_sha256,
        "n": report.n,
        "sample_seed": suite.seed,
        "source": report.source,
        "clean_accuracy": report.clean_accuracy,
        "mean_corruption_accuracy": report.mean_accuracy,
        "mean_corruption_accuracy_low": interval.low,
        "mean_corruption_accuracy_high": interval.high,
        "details": json.dumps(report.to_dict()),
        "seconds": float(report.seconds.sum()),
        "created": run_metadata("cpu", suite.seed)["created"],
        "robustkit_version": run_metadata("cpu", suite.seed)["robustkit_version"],
    }


@dataclass
class CorruptionRun:
    """A model's corruption report, its baseline's (for mCE; None where there is none) and the store row."""

    report: CorruptionReport
    baseline: CorruptionReport | None
    record: dict[str, Any]
    provenance: Provenance

    @property
    def mce(self) -> float | None:
        return self.report.mce(self.baseline) if self.baseline is not None else None


def evaluate_model_corruptions(
    model: str | nn.Module,
    dataset: str | ImageDataset = "fashion-mnist",
    *,
    n_samples: int = 1000,
    corruptions: CorruptionEntry | None = None,
    baseline: bool | None = None,
    baseline_checkpoint: str | Path | None = None,
    model_options: ModelOptions | None = None,
    run: RunOptions | None = None,
) -> CorruptionRun:
    """Accuracy of ``model`` (a registered name, or an ``nn.Module`` on [0, 1] pixels) under common
    corruptions on the seeded test subset: per corruption and severity, the mean, and — for a defended
    named model, or ``baseline=True`` — mCE against the undefended model of the same architecture
    (its cached checkpoint, or ``baseline_checkpoint``). ``model_options`` and ``run`` are
    ``evaluate_model``'s (of ``run``: seed, device, batch size, data folder, progress)."""
    weights, running = model_options or ModelOptions(), run or RunOptions()
    data = dataset if isinstance(dataset, ImageDataset) else get_dataset(dataset, data_dir=running.data_dir)
    trained = {"eps": parse_eps(str(weights.defense_eps)) if weights.defense_eps is not None else None}
    entry = _entry(model, weights.defense, trained, weights.checkpoint, weights.weights)
    suite = Suite(
        name="corruptions",
        dataset=data.info.name,
        models=(entry,),
        attacks=(),
        n_samples=n_samples,
        seed=running.seed,
        batch_size=running.batch_size,
        corruptions=corruptions or CorruptionEntry(),
    )
    where = _device(running.device, model)
    subset = data.test.subset(n_samples, seed=running.seed)
    net, provenance = _obtain(model, entry, data, where, weights.no_train)
    report = evaluate_entry(suite, net, subset, progress=running.progress)
    base_report = None
    if baseline or (baseline is None and weights.defense != "none" and isinstance(model, str)):
        if not isinstance(model, str):
            raise ConfigError("mCE's baseline is the undefended model of the same architecture: give the model by name")
        plain = _entry(model, "none", {}, baseline_checkpoint, None)
        base_net, _ = _obtain(model, plain, data, where, weights.no_train)
        base_report = evaluate_entry(suite, base_net, subset, progress=running.progress)
    return CorruptionRun(report, base_report, corruption_row(suite, entry, provenance, report), provenance)
