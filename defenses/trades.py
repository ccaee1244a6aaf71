"""TRADES (Zhang et al., ICML 2019): clean loss plus β × the KL divergence to the worst nearby point.

L = CE(f(x), y) + β · KL(f(x) ‖ f(x')), x' maximising the KL term inside the ε-ball by projected
gradient steps (eval mode, from x + 0.001·N(0, I) as in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustkit.defense import Defense
from robustkit.errors import ConfigError
from robustkit.modes import eval_mode
from robustkit.registry import DEFENSES
from robustkit.threats import clip_to_box
from robustkit.training.loop import LossFn, StepContext, StepOutput


@DEFENSES.register
@dataclass(frozen=True, kw_only=True)
class TradesTraining(Defense):
    """TRADES: a clean/robust trade-off set by ``beta`` (6 in the paper); ``steps`` (10), ``step_size`` (ε/4)."""

    name: ClassVar[str] = "trades"

    beta: float = 6.0
    steps: int = 10
    step_size: float | None = None

    recipe: ClassVar[dict[str, Any]] = {"epochs": 10}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta < 0 or self.steps < 1 or (self.step_size is not None and self.step_size <= 0):
            raise ConfigError("trades: beta ≥ 0, steps ≥ 1 and step_size > 0 are required")

    def loss_fn(self) -> LossFn:
        threat = self.threat
        alpha = self.step_size if self.step_size is not None else self.eps / 4

        def loss(model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
            with eval_mode(ctx.model):
                with torch.no_grad():
                    target = F.softmax(ctx.model(x).float(), dim=1)
                noise = torch.randn(x.shape, generator=ctx.generator, device=x.device, dtype=torch.float32)
                x_adv = clip_to_box(x + 0.001 * noise.to(x.dtype))
                for _ in range(self.steps):
                    with torch.enable_grad():
                        x_adv = x_adv.detach().requires_grad_(True)
                        kl = F.kl_div(F.log_softmax(ctx.model(x_adv).float(), dim=1), target, reduction="sum")
                        (grad,) = torch.autograd.grad(kl, x_adv)
                    x_adv = threat.step(x, x_adv.detach(), grad, alpha)
            clean_logits, adv_logits = model(x), model(x_adv.detach())
            robust_term = F.kl_div(
                F.log_softmax(adv_logits.float(), dim=1), F.softmax(clean_logits.float(), dim=1), reduction="batchmean"
            )
            value = F.cross_entropy(clean_logits.float(), y) + self.beta * robust_term
            return StepOutput(value, adv_logits, clean_logits)

        return loss
