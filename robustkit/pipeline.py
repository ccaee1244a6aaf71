"""Getting a model to attack: load a checkpoint, find it in the cache, or train it with the default recipe."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustkit.defense import Defense
from robustkit import distributed, paths
from robustkit.checkpoint import CheckpointRecord, load_model, save_checkpoint
from robustkit.data.base import ImageDataset
from robustkit.errors import CheckpointError
from robustkit.models import get_model
from robustkit.train import TrainConfig, TrainResult, train_model

log = logging.getLogger(__name__)


def cache_path(data: ImageDataset, model_name: str, defense: Defense | None) -> Path:
    """The cached checkpoint of (dataset, model, defense, its threat model).

    A defense that trains no weights (an input transform) shares the undefended model's checkpoint.
    """
    if defense is None or not defense.trains_weights:
        return paths.checkpoint_path(data.info.name, model_name)
    return paths.checkpoint_path(data.info.name, model_name, defense.name, tag=defense.tag())


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
    **overrides: Any,
) -> tuple[nn.Module, CheckpointRecord, TrainResult, Path]:
    """Train with the model's recipe, the defense's recipe, then ``overrides``; save with its record.

    Every epoch leaves a resume state beside the checkpoint (``<name>.resume.pt``); with ``resume``
    a killed run continues from it, exactly. Under torchrun only rank 0 writes. A defense that trains
    no weights gets the bare model trained and recorded without it (``obtain_model`` wraps it).
    """
    if defense is not None and not defense.trains_weights:
        log.info("%s trains no weights: training the undefended model it is applied to", defense.name)
        defense = None
    config = TrainConfig.for_model(model_name, defense.recipe if defense else {}, seed=seed, **overrides)
    model = get_model(model_name, data.info, seed=seed, weights=weights)
    train_split = data.train.subset(n_train, seed=seed)
    path = Path(out) if out else cache_path(data, model_name, defense)
    resume_path = path.with_name(path.name + ".resume.pt")
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


def obtain_model(
    model_name: str,
    data: ImageDataset,
    *,
    checkpoint: Path | None,
    defense: Defense | None,
    device: torch.device,
    seed: int = 0,
) -> tuple[nn.Module, CheckpointRecord | None, Path]:
    """The model to evaluate, in eval mode on ``device``, and the checkpoint it came from.

    Without ``checkpoint``: the cached one for (dataset, model, defense, ε), trained with the default
    recipe if missing. The model comes wrapped in the defense's inference-time part, if any.
    """
    wrap = defense.wrap if defense is not None else (lambda bare: bare)
    if checkpoint is not None:
        model, record = load_model(checkpoint, model=model_name, info=data.info, device=device)
        if record is not None and record.dataset != data.info.name:
            raise CheckpointError(f"{checkpoint} was trained on {record.dataset}, not {data.info.name}")
        return wrap(model), record, Path(checkpoint)
    path = cache_path(data, model_name, defense)
    if path.is_file():
        model, record = load_model(path, model=model_name, device=device)
        return wrap(model), record, path
    what = f"{defense.name} ({defense.tag()})" if defense and defense.trains_weights else "none"
    log.info("no checkpoint cached for (%s, %s, %s) at %s: training one with the default recipe",
             data.info.name, model_name, what, path)  # fmt: skip
    model, record, _, path = train_and_save(model_name, data, device=device, defense=defense, seed=seed)
    return wrap(model.to(device)), record, path
