"""Getting a model to attack: load a checkpoint, find it in the cache, or train it with the default recipe."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustkit import paths
from robustkit.checkpoint import CheckpointRecord, load_model, save_checkpoint
from robustkit.data.base import ImageDataset
from robustkit.errors import CheckpointError, RobustkitError
from robustkit.models import get_model
from robustkit.registry import DEFENSES
from robustkit.train import TrainConfig, TrainResult, train_model

log = logging.getLogger(__name__)


def train_and_save(
    model_name: str,
    data: ImageDataset,
    *,
    device: torch.device,
    seed: int = 0,
    out: Path | None = None,
    n_train: int | None = None,
    weights: str | None = None,
    **overrides: Any,
) -> tuple[nn.Module, CheckpointRecord, TrainResult, Path]:
    """Standard training with the model's recipe (``overrides`` win), saved with its record."""
    config = TrainConfig.for_model(model_name, seed=seed, **overrides)
    model = get_model(model_name, data.info, seed=seed, weights=weights)
    train_split = data.train.subset(n_train, seed=seed)
    result = train_model(model, train_split, config, info=data.info, test=data.test, device=device)
    record = CheckpointRecord(
        model=model_name,
        dataset=data.info.name,
        dataset_info=data.info.to_dict(),
        train_settings={**asdict(config), "n_train": len(train_split), "pretrained": weights, "device": str(device)},
        epochs=config.epochs,
        seed=seed,
        clean_accuracy=result.test_accuracy,
    )
    path = save_checkpoint(model, out or paths.checkpoint_path(data.info.name, model_name), record)
    return model.eval(), record, result, path


def obtain_model(
    model_name: str,
    data: ImageDataset,
    *,
    checkpoint: Path | None,
    defense: str,
    device: torch.device,
    seed: int = 0,
) -> tuple[nn.Module, CheckpointRecord | None, Path]:
    """The model to evaluate, in eval mode on ``device``, and the checkpoint it came from."""
    if checkpoint is not None:
        model, record = load_model(checkpoint, model=model_name, info=data.info, device=device)
        if record is not None and record.dataset != data.info.name:
            raise CheckpointError(f"{checkpoint} was trained on {record.dataset}, not {data.info.name}")
        return model, record, Path(checkpoint)
    if defense != "none":
        DEFENSES.get(defense)  # an unknown name fails here with suggestions
    path = paths.checkpoint_path(data.info.name, model_name, defense)
    if path.is_file():
        model, record = load_model(path, model=model_name, device=device)
        return model, record, path
    if defense != "none":
        raise RobustkitError(f"no {defense} checkpoint cached at {path}; train one with robustkit train --defense {defense}")
    log.info("no checkpoint cached for (%s, %s, %s) at %s: training one with the default recipe",
             data.info.name, model_name, defense, path)  # fmt: skip
    model, record, _, path = train_and_save(model_name, data, device=device, seed=seed)
    return model.to(device), record, path
