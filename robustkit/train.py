"""Standard training: a short, flat loop over data resident on the device (after airbench/nanoGPT).

Defenses plug in through ``loss_fn``: the loop stays one loop whatever the training objective.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from robustkit.augment import random_crop, random_flip
from robustkit.data.base import DatasetInfo, Split
from robustkit.device import bf16_is_fast
from robustkit.errors import ConfigError
from robustkit.predict import accuracy

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor]]  # (model, x, y) → (loss, logits)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Hyper-parameters in one place; ``for_model`` fills in what a model's builder recommends."""

    epochs: int = 2  # passes over the training split
    batch_size: int = 128
    lr: float = 0.1  # peak learning rate (one-cycle) or starting rate (cosine, constant)
    optimizer: str = "sgd"  # sgd (Nesterov, momentum 0.9) | adam
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # onecycle | cosine | constant
    warmup: float = 0.2  # fraction of the steps spent warming up (one-cycle)
    label_smoothing: float = 0.0
    augment: bool = False  # random crop + flip (where the data allows); pays off only over many epochs
    precision: str = "auto"  # auto (bf16 where it is fast) | bf16 | fp32
    channels_last: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "optimizer": self.optimizer in ("sgd", "adam"),
            "weight_decay": self.weight_decay >= 0,
            "schedule": self.schedule in ("onecycle", "cosine", "constant"),
            "warmup": 0 < self.warmup < 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "precision": self.precision in ("auto", "bf16", "fp32"),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"bad training setting {bad[0]}={getattr(self, bad[0])!r}")

    @classmethod
    def for_model(cls, model_name: str, **overrides: Any) -> TrainConfig:
        """Defaults, then the model's recipe, then ``overrides`` that are not ``None``."""
        from robustkit.models import train_recipe

        known = {f.name for f in fields(cls)}
        settings = {**train_recipe(model_name), **{k: v for k, v in overrides.items() if v is not None}}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**settings)


@dataclass
class TrainResult:
    """Per-epoch history and the final test accuracy (fractions in [0, 1], seconds)."""

    history: list[dict[str, float]] = field(default_factory=list)
    test_accuracy: float | None = None
    seconds: float = 0.0


def cross_entropy_loss(label_smoothing: float = 0.0) -> LossFn:
    def loss_fn(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = model(x)
        return F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing), logits

    return loss_fn


def train_model(
    model: nn.Module,
    train: Split,
    config: TrainConfig,
    *,
    info: DatasetInfo | None = None,
    test: Split | None = None,
    device: torch.device | str = "cpu",
    loss_fn: LossFn | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place on ``train`` and report test accuracy; returns the history."""
    device = torch.device(device)
    loss_fn = loss_fn or cross_entropy_loss(config.label_smoothing)
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and bf16_is_fast(device))
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    images, labels = train.images.to(device), train.labels.to(device)
    n = len(labels)
    batch_size = min(config.batch_size, n)
    steps = n // batch_size  # drop the ragged last batch: a batch of one breaks BatchNorm
    optimizer, scheduler = _optimizer(model, config, steps * config.epochs)
    order_rng = torch.Generator().manual_seed(config.seed)
    augment_rng = torch.Generator(device=device).manual_seed(config.seed + 1)
    flip = info is None or info.flip_invariant
    pad = max(1, images.shape[-1] // 8)

    result, start = TrainResult(), time.perf_counter()
    log.info("training %d images × %d epochs, batch %d, %s, %s", n, config.epochs, batch_size,
             device, "bf16 autocast" if use_bf16 else "fp32")  # fmt: skip
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(n, generator=order_rng).to(device)
        loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device)
        epoch_start = time.perf_counter()
        # disable=None: tqdm switches itself off when stderr is not a terminal (CI logs, pipes)
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{config.epochs}", disable=None if progress else True, leave=False)
        for step in bar:
            index = order[step * batch_size : (step + 1) * batch_size]
            x, y = images[index], labels[index]
            if config.augment:
                x = random_crop(x, pad, augment_rng)
                x = random_flip(x, augment_rng) if flip else x
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss, logits = loss_fn(model, x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            if step % 20 == 0 or step == steps - 1:  # .item() syncs; not on every step
                seen = (step + 1) * batch_size
                rate = seen / (time.perf_counter() - epoch_start)
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}", img_s=f"{rate:.0f}")
        seen = steps * batch_size
        seconds = time.perf_counter() - epoch_start
        row = {"epoch": epoch + 1, "loss": loss_sum.item() / seen, "train_accuracy": correct.item() / seen,
               "seconds": seconds, "images_per_second": seen / seconds}  # fmt: skip
        result.history.append(row)
        log.info("epoch %d/%d: loss %.4f, train accuracy %.4f, %.0f img/s", epoch + 1, config.epochs,
                 row["loss"], row["train_accuracy"], row["images_per_second"])  # fmt: skip
    if config.channels_last:
        model.to(memory_format=torch.contiguous_format)
    result.seconds = time.perf_counter() - start
    if test is not None:
        result.test_accuracy = accuracy(model, test)
        log.info("test accuracy %.4f after %.0f s", result.test_accuracy, result.seconds)
    return result


def _optimizer(model: nn.Module, config: TrainConfig, total_steps: int):
    decay = [p for p in model.parameters() if p.ndim > 1]  # no weight decay on biases and norms
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr)
    total_steps = max(total_steps, 1)
    if config.schedule == "onecycle":
        scheduler: Any = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=config.warmup
        )
    elif config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return optimizer, scheduler


__all__ = ["LossFn", "TrainConfig", "TrainResult", "cross_entropy_loss", "train_model"]
