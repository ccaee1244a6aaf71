"""Madry et al. (ICLR 2018): train on the worst case PGD finds inside the ε-ball.

min_θ E[ max_{‖η‖≤ε} L(f(x+η; θ), y) ], the inner max by the same PGD plugin evaluation uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks import PGD, Attack
from robustkit.defense import Defense
from robustkit.errors import ConfigError
from robustkit.modes import eval_mode
from robustkit.per_sample_random import SampleRandom
from robustkit.registry import DEFENSES
from robustkit.training.loop import LossFn, StepContext, StepOutput


@DEFENSES.register
@dataclass(frozen=True, kw_only=True)
class MadryTraining(Defense):
    """PGD adversarial training (Madry et al. 2018), L∞ or L2.

    Arguments: ``eps``, ``norm``; ``steps`` (7) and ``step_size`` (2.5·ε/steps) of the inner PGD,
    which starts at a random point of the ball and runs in eval mode (BatchNorm statistics are
    neither used from the batch nor updated); ``clean_weight`` mixes in the clean loss,
    (1 − w)·L(x_adv) + w·L(x); ``warmup_epochs`` ramps ε linearly from 0.

    Example::

        from defenses import MadryTraining
        MadryTraining(eps=0.1, steps=7).fit(model, data.train, epochs=10)
    """

    name: ClassVar[str] = "madry"

    steps: int = 7
    step_size: float | None = None
    random_start: bool = True
    clean_weight: float = 0.0
    warmup_epochs: float = 0.0

    recipe: ClassVar[dict[str, Any]] = {"epochs": 10}

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.clean_weight <= 1 or self.warmup_epochs < 0:
            raise ConfigError("madry: clean_weight must be in [0, 1] and warmup_epochs ≥ 0")
        PGD(eps=self.eps, norm=self.norm, steps=self.steps, step_size=self.step_size)  # validates the rest

    def inner_attack(self, progress: float) -> PGD:
        scale = min(1.0, progress / self.warmup_epochs) if self.warmup_epochs else 1.0
        step_size = None if self.step_size is None else self.step_size * scale or None
        return PGD(
            eps=self.eps * scale,
            norm=self.norm,
            steps=self.steps,
            step_size=step_size,
            random_start=self.random_start,
            early_stop=False,
        )

    def loss_fn(self) -> LossFn:
        def loss(model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
            x_adv = adversarial_batch(self.inner_attack(ctx.progress), ctx, x, y)
            logits = model(x_adv)
            value = F.cross_entropy(logits.float(), y)
            clean_logits = None
            if self.clean_weight:
                clean_logits = model(x)
                value = (1 - self.clean_weight) * value + self.clean_weight * F.cross_entropy(clean_logits.float(), y)
            elif ctx.want_clean:
                clean_logits = clean_predictions(ctx, x)
            return StepOutput(value, logits, clean_logits)

        return loss


def adversarial_batch(attack: Attack, ctx: StepContext, x: Tensor, y: Tensor) -> Tensor:
    """The inner maximisation, on the bare model in eval mode; training mode comes back afterwards."""
    with eval_mode(ctx.model):
        rng = SampleRandom.from_generator(ctx.generator, len(x), x.device)
        return attack.perturb(ctx.model, x, y, target=None, rng=rng).x_adv.detach()


def clean_predictions(ctx: StepContext, x: Tensor) -> Tensor:
    """Clean logits for the progress bar only: no gradient, eval mode, so training is unaffected."""
    with torch.no_grad(), eval_mode(ctx.model):
        return ctx.model(x)
