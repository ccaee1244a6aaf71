"""Batched predictions in eval mode: the one clean-accuracy loop that training and evaluation share."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustkit.data.base import IndexedSplit
from robustkit.errors import ConfigError
from robustkit.modes import eval_mode
from robustkit.random_forward import fixed_draws, randomised_modules

DRAWS = 9  # passes behind a randomised model's verdict; odd, so right and wrong cannot tie
ABSTAIN = -1  # a randomised model's verdict when no class wins a majority of the draws (no label equals it)


def verdict_draws(model: nn.Module) -> int:
    """Forward passes behind one verdict: ``DRAWS`` for a randomised model, 1 (no extra cost) otherwise."""
    return DRAWS if randomised_modules(model) else 1


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, *, batch_size: int = 512, draws: int | None = None) -> Tensor:
    """Predicted labels (on ``images``' device), in eval mode on the model's device, outside any autocast.

    This is the verdict every accuracy and every verification rests on, so it runs at the model's
    own precision whatever autocast the caller has active. A randomised model (one holding a
    ``Randomised`` module) gets a vote: the class predicted in a strict majority of ``draws`` passes
    (default ``verdict_draws``), else ``ABSTAIN``. So a sample counts as correct only when right in
    most draws, as fooled only when wrong in most, and as reaching a target only when it lands there
    in most. The votes draw from the randomised modules' seeds (``fixed_draws``): the same images
    always get the same verdict, so an attack's success claim and the evaluation's verification
    agree, and the attack's own stream of draws continues undisturbed.
    """
    draws = verdict_draws(model) if draws is None else draws
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ConfigError(f"draws must be a whole number ≥ 1, got {draws!r}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else images.device
    with eval_mode(model), torch.autocast(device.type, enabled=False):
        with fixed_draws(model):
            labels = [_vote(model, chunk.to(device), draws) for chunk in images.split(batch_size)]
    return torch.cat(labels).to(images.device) if labels else torch.empty(0, dtype=torch.long, device=images.device)


def _vote(model: nn.Module, x: Tensor, draws: int) -> Tensor:
    if draws == 1:
        return model(x).argmax(1)
    votes = torch.stack([model(x).argmax(1) for _ in range(draws)])  # draws × N
    label = votes.mode(0).values
    return torch.where((votes == label).sum(0) * 2 > draws, label, ABSTAIN)


@torch.no_grad()
def num_classes(model: nn.Module, images: Tensor) -> int:
    """How many logits the classifier outputs (one eval-mode pass on one image)."""
    with eval_mode(model):
        return model(images[:1]).shape[1]


def accuracy(model: nn.Module, split: IndexedSplit, *, batch_size: int = 512) -> float:
    """Fraction of ``split`` classified correctly, in [0, 1], read batch by batch."""
    if len(split) == 0:
        return float("nan")
    param = next(model.parameters(), None)
    device = param.device if param is not None else None
    correct = sum(
        int((predict(model, x, batch_size=batch_size) == y).sum()) for x, y in split.batches(batch_size, device=device)
    )
    return correct / len(split)
