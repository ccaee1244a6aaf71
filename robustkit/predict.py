"""Batched predictions in eval mode: the one clean-accuracy loop that training and evaluation share."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustkit.data.base import Split
from robustkit.modes import eval_mode


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, *, batch_size: int = 512) -> Tensor:
    """Predicted labels (on ``images``' device), in eval mode on the model's device, outside any autocast.

    This is the verdict every accuracy and every verification rests on, so it runs at the model's
    own precision whatever autocast the caller has active.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else images.device
    with eval_mode(model), torch.autocast(device.type, enabled=False):
        labels = [model(chunk.to(device)).argmax(1) for chunk in images.split(batch_size)]
    return torch.cat(labels).to(images.device) if labels else torch.empty(0, dtype=torch.long, device=images.device)


@torch.no_grad()
def num_classes(model: nn.Module, images: Tensor) -> int:
    """How many logits the classifier outputs (one eval-mode pass on one image)."""
    with eval_mode(model):
        return model(images[:1]).shape[1]


def accuracy(model: nn.Module, split: Split, *, batch_size: int = 512) -> float:
    """Fraction of ``split`` classified correctly, in [0, 1]."""
    if len(split) == 0:
        return float("nan")
    return (predict(model, split.images, batch_size=batch_size) == split.labels).float().mean().item()
