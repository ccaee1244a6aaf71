"""Fast adversarial training (Wong, Rice & Kolter, ICLR 2020, "Fast is better than free").

FGSM from a random start with step 1.25·ε, plus the guard against catastrophic overfitting: after
each epoch, PGD accuracy on held-out training images; if it collapses, roll back to the best epoch
and stop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks import FGSM, PGD
from defenses.madry import adversarial_batch, clean_predictions
from robustkit.data.base import IndexedSplit, Split
from robustkit.defense import Defense
from robustkit.modes import eval_mode
from robustkit.predict import predict
from robustkit.registry import DEFENSES
from robustkit.training.loop import EpochHook, LossFn, StepContext, StepOutput

log = logging.getLogger(__name__)


@DEFENSES.register
@dataclass(frozen=True, kw_only=True)
class FastTraining(Defense):
    """FGSM adversarial training with random start (Wong et al. 2020) and a catastrophic-overfitting guard.

    Arguments: ``eps``, ``norm``; ``step_scale`` (1.25: the FGSM step is 1.25·ε, then projected);
    ``guard_samples`` (512 training images held out and attacked with PGD-10 after every epoch);
    ``guard_drop`` (0.2: a fall of PGD accuracy this far below its best restores the best epoch and stops).
    """

    name: ClassVar[str] = "fast"

    step_scale: float = 1.25
    guard_samples: int = 512
    guard_drop: float = 0.2

    recipe: ClassVar[dict[str, Any]] = {"epochs": 10}

    def loss_fn(self) -> LossFn:
        def loss(model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
            attack = FGSM(eps=self.eps, norm=self.norm, random_start=True, step_scale=self.step_scale)
            x_adv = adversarial_batch(attack, ctx, x, y)
            logits = model(x_adv)
            clean = clean_predictions(ctx, x) if ctx.want_clean else None
            return StepOutput(F.cross_entropy(logits.float(), y), logits, clean)

        return loss

    def held_out(self, train: IndexedSplit) -> tuple[IndexedSplit, Split | None]:
        n = min(self.guard_samples, len(train) // 5)
        if n == 0:
            return train, None
        return train.take(torch.arange(n, len(train))), train.take(torch.arange(n)).load()

    def on_epoch_end(self, guard: Split) -> EpochHook:
        return OverfittingGuard(guard, PGD(eps=self.eps, norm=self.norm, steps=10, seed=0), self.guard_drop)


class OverfittingGuard:
    """After each epoch: PGD accuracy on held-out training images; on a collapse, restore the best epoch.

    Its state (best accuracy and weights) goes into the resume file, so a resumed run guards alike.
    """

    def __init__(self, guard: Split, attack: PGD, drop: float) -> None:
        self.guard, self.attack, self.drop = guard, attack, drop
        self.best_accuracy, self.best_state = -1.0, None

    def __call__(self, model: nn.Module, epoch: int) -> bool:
        device = next(model.parameters()).device
        x, y = self.guard.images.to(device), self.guard.labels.to(device)
        with eval_mode(model):
            robust = (predict(model, self.attack(model, x, y).x_adv) == y).float().mean().item()
        log.info("fast: PGD-10 accuracy on %d held-out training images after epoch %d: %.4f", len(y), epoch + 1, robust)
        if robust > self.best_accuracy:
            self.best_accuracy = robust
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        if robust < self.best_accuracy - self.drop:
            log.warning(
                "fast: catastrophic overfitting (PGD accuracy %.3f, best %.3f); restoring the best epoch",
                robust,
                self.best_accuracy,
            )
            model.load_state_dict(self.best_state)
            return True
        return False

    def state_dict(self) -> dict:
        return {"best_accuracy": self.best_accuracy, "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best_accuracy, self.best_state = state["best_accuracy"], state["best_state"]
