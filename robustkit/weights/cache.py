"""Training a model into the checkpoint cache: its paths, the recipe guard, and the shortcut scripts use."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustkit.defense import Defense
from robustkit import paths
from robustkit.training import distributed
from robustkit.weights.checkpoint import CheckpointRecord, read_record, save_checkpoint
from robustkit.data.base import ImageDataset
from robustkit.errors import CheckpointError
from robustkit.models import get_model, model_revision
from robustkit.training.loop import NOT_RECIPE, TrainConfig, TrainResult, train_model

log = logging.getLogger(__name__)


def recipe_tag(model_name: str, defense: Defense | None, overrides: dict[str, Any] | None) -> str | None:
    """``recipe<8 hex>`` naming what a training changes from the default recipe of (model, defense)
    (None when it changes nothing).

    The defaults are filled in first: an override equal to the model's or the defense's own value
    (``--lr 0.05`` on lenet5, whose recipe says 0.05) changes nothing, so equal trainings share one
    path. Settings that leave the weights alone (``checkpoint_every``) name nothing either.
    """
    changed = departures(model_name, defense, overrides)
    if not changed:
        return None
    return "recipe" + hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]


def departures(model_name: str, defense: Defense | None, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The overrides that change the weights from what (model, defense)'s own recipe trains."""
    trained = defense.recipe if defense is not None and defense.trains_weights else {}
    default = TrainConfig.for_model(model_name, trained).recipe()
    return {k: v for k, v in (overrides or {}).items()
            if v is not None and k not in NOT_RECIPE and (k not in default or default[k] != v)}  # fmt: skip


def revision_tag(model_name: str) -> str | None:
    """``rev2`` for an architecture changed since its first release (``model_revision``), else None."""
    revision = model_revision(model_name)
    return f"rev{revision}" if revision > 1 else None


def cache_path(data: ImageDataset, model_name: str, defense: Defense | None, recipe: dict[str, Any] | None = None) -> Path:
    """The cached checkpoint of (dataset, model, defense, its threat model, training overrides).

    A defense that trains no weights (an input transform) shares the undefended model's checkpoint.
    Overrides that change the default recipe (``train:`` in a suite, ``--epochs`` etc. on ``train``)
    get a path of their own (``recipe_tag``), so a checkpoint of one recipe never replaces another's.
    A model whose architecture changed since its first release (``revision`` ≥ 2) names its revision,
    so a checkpoint of the earlier architecture, which may load into the new one without a shape
    error, is never taken for it.
    """
    trained = defense is not None and defense.trains_weights
    parts = (defense.tag() if trained else None, revision_tag(model_name), recipe_tag(model_name, defense, recipe))
    tag = "-".join(t for t in parts if t) or None
    return paths.checkpoint_path(data.info.name, model_name, defense.name if trained else "none", tag=tag)


def same_recipe(record: CheckpointRecord, config: TrainConfig, n_train: int, weights: str | None) -> bool:
    """Whether a cached checkpoint was trained exactly as ``config`` would train (device and history aside)."""
    wanted = {**config.recipe(), "n_train": n_train, "pretrained": weights}
    return all(record.train_settings.get(k) == v for k, v in wanted.items())


def train_and_save(
    model_name: str,
    data: ImageDataset,
    *,
    device: torch.device,
    defense: Defense | None = None,
    seed: int = 0,
    out: Path | None = None,
    n_train: int | None = None,
    weights: str | None = None,
    resume: bool = False,
    force: bool = False,
    **overrides: Any,
) -> tuple[nn.Module, CheckpointRecord, TrainResult, Path]:
    """Train with the model's recipe, the defense's recipe, then ``overrides``; save with its record.

    Without ``out`` the checkpoint goes to the cache, at a path of its own when anything (overrides,
    ``n_train``, ``weights``) departs from the default recipe.

    Every epoch (and every ``checkpoint_every`` steps) leaves a resume state beside the checkpoint
    (``<name>.resume.pt``); with ``resume`` a killed run continues from it, exactly. Under torchrun only rank 0 writes. A file at the path
    that holds a checkpoint of another recipe is never replaced unless ``force``: a ``CheckpointError``
    names ``--out`` and ``--force`` instead (before any training). A defense that trains
    no weights gets the bare model trained and recorded without it (``resolve_model`` wraps it).
    """
    if defense is not None and not defense.trains_weights:
        log.info("%s trains no weights: training the undefended model it is applied to", defense.name)
        defense = None
    config = TrainConfig.for_model(model_name, defense.recipe if defense else {}, seed=seed, **overrides)
    train_split = data.train.subset(n_train, seed=seed)
    recipe = {k: v for k, v in {**overrides, "n_train": n_train, "weights": weights}.items() if v is not None}
    path = Path(out) if out else cache_path(data, model_name, defense, recipe)
    resume_path = path.with_name(path.name + ".resume.pt")
    existing = read_record(path) if path.is_file() and not (force or resume) else None
    if existing is not None and not same_recipe(existing, config, len(train_split), weights):
        raise CheckpointError(f"{path} holds a checkpoint trained with another recipe ({existing.epochs} epochs, "
                              f"accuracy {existing.clean_accuracy}); write elsewhere with --out, or replace it "
                              "with --force")  # fmt: skip
    model = get_model(model_name, data.info, seed=seed, weights=weights)
    if not resume and distributed.is_main() and resume_path.exists():
        log.warning("%s holds an interrupted run; starting over (pass --resume to continue it)", resume_path)
        resume_path.unlink()
    distributed.barrier()  # every rank, always: a barrier only some ranks reach hangs the run
    fit_kwargs = dict(info=data.info, test=data.test, device=device, resume_path=resume_path)
    if defense is None:
        result = train_model(model, train_split, config, **fit_kwargs)
    else:
        result = defense.fit(model, train_split, config=config, **fit_kwargs)
    record = CheckpointRecord(
        model=model_name,
        dataset=data.info.name,
        dataset_info=data.info.to_dict(),
        defense=defense.name if defense else "none",
        defense_settings=defense.settings() if defense else {},
        train_settings={**asdict(config), "n_train": len(train_split), "pretrained": weights, "device": str(device),
                        "processes": distributed.world_size(), "history": result.history,
                        "stopped_by_guard": result.stopped_early},  # fmt: skip
        epochs=len(result.history),
        seed=seed,
        clean_accuracy=result.test_accuracy,
    )
    if distributed.is_main():
        save_checkpoint(model, path, record)
        resume_path.unlink(missing_ok=True)
    return model.eval(), record, result, path
