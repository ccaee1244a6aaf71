"""The one model resolver: a model to evaluate from given weights, a checkpoint, the cache, or training.

The CLI (``evaluate``, its transfer source), the runner and scripts all come through
``resolve_model``, which returns the model with its provenance (what the records cite). It trains
only when ``allow_train`` and nothing else answers, and says so before it starts.

Cache matching: with a recipe (a suite entry's ``train:``, ``{}`` for the default) only that
recipe's path counts. Without one (``evaluate``) the default recipe's checkpoint comes first, else
the one checkpoint trained with another recipe for the same (data set, model, defense); several
such are an error that lists them.
"""

from __future__ import annotations

import glob
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustkit.data.base import ImageDataset
from robustkit.defense import Defense
from robustkit.errors import CheckpointError, ConfigError
from robustkit.models import check_model_name, get_model, model_source
from robustkit.weights.cache import cache_path, stale_reason, train_and_save, training_lock
from robustkit.weights.checkpoint import (
    WEIGHT_FILES,
    CheckpointRecord,
    file_sha256,
    is_weights_file,
    load_model,
    load_weights,
    read_checkpoint,
    read_record,
    weights_sha256,
)
from robustkit.weights.missing import missing_hint, train_command

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """Where evaluated weights come from: a file (path + SHA-256) or a library's name for them."""

    description: str  # one line for people: "file x.pth sha256 …", "torchvision ResNet50_Weights… (torchvision 0.x)"
    path: Path | None = None
    sha256: str | None = None  # of the file (``sha256sum``); for named weights, of the description (name + version)
    weights_sha256: str | None = None  # of the tensors alone: equal weights, equal digest, whatever the file

    @property
    def identity(self) -> str | None:
        """What a result depends on, so what keys it: the weights' digest, else (named weights) the description's."""
        return self.weights_sha256 or self.sha256

    def record(self) -> dict[str, Any]:
        """The record's columns naming the weights, the same in ``--output`` rows and store rows."""
        return {
            "checkpoint": str(self.path) if self.path else None,
            "checkpoint_sha256": self.sha256,
            "weights_sha256": self.weights_sha256,
            "weights": self.description,
        }


@dataclass(frozen=True)
class Resolved:
    model: nn.Module  # in eval mode on the device, wrapped in the defense's inference-time part
    record: CheckpointRecord | None  # the checkpoint's, for robustkit checkpoints
    provenance: Provenance


def locate(
    model_name: str,
    data: ImageDataset,
    *,
    defense: Defense | None = None,
    checkpoint: Path | None = None,
    weights: str | None = None,
    recipe: dict[str, Any] | None = None,
) -> Provenance | None:
    """The provenance ``resolve_model`` would report, found without loading; None when it would train."""
    check_model_name(model_name)
    if checkpoint is not None and weights is not None:
        raise ConfigError("give a checkpoint or weights, not both")
    source = model_source(model_name)
    if weights is not None and not is_weights_file(weights):
        if source is None:
            raise ConfigError(
                f"{model_name} has no named weights; give --weights a state-dict file ({', '.join(WEIGHT_FILES)})"
            )
        return _named(source[0].describe(source[1], data.info, weights))
    if weights is not None or checkpoint is not None:
        path = Path(weights or checkpoint).expanduser()
        if not path.is_file():
            raise CheckpointError(f"{'weights file' if weights else 'checkpoint'} {path} does not exist")
        return _file(path)
    if source is not None and source[0].PRETRAINED_ONLY:
        return _named(source[0].describe(source[1], data.info))
    path = cached_checkpoint(data, model_name, defense, recipe)
    return _file(path) if path is not None else None


def resolve_model(
    model_name: str,
    data: ImageDataset,
    *,
    device: torch.device | str = "cpu",
    defense: Defense | None = None,
    checkpoint: Path | None = None,
    weights: str | None = None,
    recipe: dict[str, Any] | None = None,
    allow_train: bool = True,
) -> Resolved:
    """The model to evaluate and where its weights come from (see the module's docstring for the order).

    A checkpoint it trains follows the recipe exactly, its seed included (0 unless ``recipe`` names one):
    never an evaluation's seed, which the file's name would not say.
    """
    wrap = defense.wrap if defense is not None else (lambda bare: bare)
    found = locate(model_name, data, defense=defense, checkpoint=checkpoint, weights=weights, recipe=recipe)
    if found is not None and found.path is None:  # named weights: the library loads them
        model = get_model(model_name, data.info, weights=weights).to(device).eval()
        return Resolved(wrap(model), None, found)
    if found is not None and weights is not None:  # a state-dict file for this architecture
        state, record = read_checkpoint(found.path)
        model = get_model(model_name, data.info)
        load_weights(model, state, found.path)
        return Resolved(wrap(model.to(device).eval()), record, found)
    if found is not None:
        model, record = load_model(found.path, model=model_name, info=data.info, device=device)
        if record is not None and record.dataset != data.info.name:
            raise CheckpointError(f"{found.path} was trained on {record.dataset}, not {data.info.name}")
        return Resolved(wrap(model), record, found)
    path = cache_path(data, model_name, defense, recipe)
    what = f"({data.info.name}, {model_name}, {defense.name if defense else 'none'})"
    if not allow_train:
        raise CheckpointError(f"no checkpoint for {what} at {path}; {missing_hint(model_name, data, defense, recipe)}")
    with training_lock(path):
        if path.is_file():  # another process (a parallel shard) trained it while this one waited
            return resolve_model(model_name, data, device=device, defense=defense, recipe=recipe, allow_train=False)
        overrides = dict(recipe or {})
        log.info(
            "no checkpoint for %s: training one%s, to be written to %s",
            what,
            f" with {overrides}" if overrides else " with the default recipe",
            path,
        )
        model, record, _, path = train_and_save(
            model_name,
            data,
            device=device,
            defense=defense,
            out=path,
            n_train=overrides.pop("n_train", None),
            **overrides,
        )
    return Resolved(wrap(model.to(device).eval()), record, _file(path))


def cached_checkpoint(
    data: ImageDataset, model_name: str, defense: Defense | None, recipe: dict[str, Any] | None
) -> Path | None:
    """The cache's checkpoint by the matching rule (module docstring); None if there is none."""
    path = cache_path(data, model_name, defense, recipe)
    if path.is_file() or recipe is not None:
        return _current(path, data, model_name, defense, recipe) if path.is_file() else None
    pattern = glob.escape(str(path.with_suffix(""))) + "-recipe*.safetensors"
    others = [Path(p) for p in sorted(glob.glob(pattern)) if _holds(Path(p), model_name)]
    if len(others) > 1:
        raise CheckpointError(
            f"no default-recipe checkpoint at {path}, and {len(others)} trained with other recipes "
            f"({', '.join(p.name for p in others)}): choose one with --checkpoint"
        )
    if others:
        log.info("using %s (trained with another recipe than the default; none at %s)", others[0], path.name)
    return _current(others[0], data, model_name, defense, None) if others else None


def _current(
    path: Path, data: ImageDataset, model_name: str, defense: Defense | None, recipe: dict[str, Any] | None
) -> Path:
    """``path``, unless its record says it was trained under defaults that have changed since (``stale_reason``)."""
    record = read_record(path)
    reason = stale_reason(path, record, data, model_name, defense) if record is not None else None
    if reason is None:
        return path
    fix = "move it out of the cache"
    if path == cache_path(data, model_name, defense, recipe):
        fix = f"replace it with `{train_command(model_name, data, defense, recipe)[0]} --force`"
    raise CheckpointError(
        f"the cached {path} no longer matches the recipe it is named for: {reason}; {fix}, "
        "or evaluate it as it is with --checkpoint"
    )


def _holds(path: Path, model_name: str) -> bool:
    record = read_record(path)
    return record is not None and record.model == model_name


def _file(path: Path) -> Provenance:
    """A file's provenance: both digests, from one reading of its tensors (``resolve_model`` loads them again)."""
    sha = file_sha256(path)
    return Provenance(
        description=f"file {path} sha256 {sha}",
        path=path,
        sha256=sha,
        weights_sha256=weights_sha256(read_checkpoint(path)[0]),
    )


def _named(description: str) -> Provenance:
    return Provenance(description=description, sha256=hashlib.sha256(description.encode()).hexdigest())
