"""Attack objectives, written so that an attack always *maximises* them."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

LOSSES = ("ce", "margin")


def _margin(logits: Tensor, cls: Tensor) -> Tensor:
    """max_{j≠cls} z_j − z_cls: positive exactly when ``cls`` is not the prediction."""
    own = logits.gather(1, cls[:, None]).squeeze(1)
    others = logits.scatter(1, cls[:, None], float("-inf"))
    return others.amax(1) - own


def attack_loss(logits: Tensor, y: Tensor, target: Tensor | None, kind: str) -> Tensor:
    """Per-sample objective: untargeted pushes away from ``y``, targeted pulls toward ``target``."""
    if kind == "ce":
        if target is None:
            return F.cross_entropy(logits, y, reduction="none")
        return -F.cross_entropy(logits, target, reduction="none")
    if target is None:
        return _margin(logits, y)
    return -_margin(logits, target)


def is_success(prediction_or_logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """Per-sample success from predicted labels (N) or logits (N×K)."""
    pred = prediction_or_logits.argmax(1) if prediction_or_logits.ndim == 2 else prediction_or_logits
    return pred == target if target is not None else pred != y


__all__ = ["LOSSES", "attack_loss", "is_success"]
