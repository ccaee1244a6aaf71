"""What the score-based random searches share (Square, Sparse-RS, Patch-RS): scoring a candidate, the authors'
schedules, and the settings of Sparse-RS's two versions (pixels, patches).

A candidate's score is one forward pass (the mean of ``eot`` passes of a randomised model); a claimed
success under reduced-precision autocast is re-checked at full precision before a sample retires.
The schedules shrink the size of a move as the budget is spent, keyed on the step rescaled to the
authors' 10 000-query budget, so a shorter run follows the same curve faster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from robustkit.attack import Attack
from robustkit.losses import attack_loss, confirmed_success


@dataclass(frozen=True, kw_only=True)
class SparseRandomSearch(Attack):
    """The settings Sparse-RS's pixel and patch versions share, its paper budget and its scoring."""

    loss: str = "margin"
    eot: int = 1  # a randomised model's logits averaged over this many passes per query
    queries: int = 300
    alpha_init: float  # each version sets the authors' value
    precision: str = "bf16"

    @classmethod
    def paper(cls, **settings) -> Self:
        """The paper's budget (10 000 queries, full precision); ``settings`` override it."""
        return cls(**{"queries": 10000, "precision": "fp32", **settings})

    def _score(self, model: nn.Module, x_adv: Tensor, y: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor]:
        return search_score(model, x_adv, y, target, loss=self.loss, eot=self.eot, precision=self.precision)


def search_score(
    model: nn.Module, x_adv: Tensor, y: Tensor, target: Tensor | None, *, loss: str, eot: int, precision: str
) -> tuple[Tensor, Tensor]:
    """Loss to maximise (float32, N) and success (bool, N) per sample, from one query."""
    logits = model(x_adv).float() if eot == 1 else torch.stack([model(x_adv).float() for _ in range(eot)]).mean(0)
    hit = confirmed_success(model, x_adv, logits, y, target, precision)  # retire only on a full-precision verdict
    return attack_loss(logits, y, target, loss), hit


def schedule_divisor(step: int, queries: int, schedule: tuple[tuple[int, int], ...]) -> int:
    """The divisor of α at ``step`` of ``queries``: the first (threshold, divisor) whose threshold the
    step, rescaled to 10 000 queries, passes (thresholds in decreasing order); 1 before any."""
    rescaled = int(step / queries * 10000)
    return next((divisor for threshold, divisor in schedule if rescaled > threshold), 1)
