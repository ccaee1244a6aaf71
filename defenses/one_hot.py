"""A defense that hides the scores: the model answers with the one-hot of its predicted class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from robustkit.defense import Defense
from robustkit.registry import DEFENSES
from robustkit.training.loop import LossFn, cross_entropy_loss


class OneHot(nn.Module):
    """``one_hot(argmax model(x))``: the label and nothing else. Zero times the logits keeps the graph, so a
    gradient attack reads an exact zero gradient (masking the checks should see) rather than crashing."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.training = model.training

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(x)
        return F.one_hot(logits.argmax(1), logits.shape[1]).to(logits.dtype) + 0 * logits


@DEFENSES.register
@dataclass(frozen=True, kw_only=True)
class OneHotOutput(Defense):
    """Scores hidden: the output is the one-hot of the predicted class (a deployed model's API, label only).

    Nothing to climb for score-based attacks (Square's margin is constant until the label flips) and a zero
    gradient for gradient ones; label-only attacks (``hopskipjump``, ``rays``) see the same model as
    before. Trains nothing: it wraps the undefended model's checkpoint. ``eps`` and ``norm`` are accepted
    (commands pass the evaluation's budget) and ignored.
    """

    name: ClassVar[str] = "one-hot"
    eps: float = 0.0
    trains_weights: ClassVar[bool] = False

    def wrap(self, model: nn.Module) -> nn.Module:
        return OneHot(model)

    def loss_fn(self) -> LossFn:
        return cross_entropy_loss()

    def tag(self) -> str:
        return ""
