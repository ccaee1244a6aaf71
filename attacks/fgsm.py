"""FGSM: one signed-gradient step (Goodfellow, Shlens & Szegedy, ICLR 2015); FGM under L2."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from robustkit.attack import LossGradientAttack, Perturbed
from robustkit.registry import ATTACKS


@ATTACKS.register
@dataclass(frozen=True, kw_only=True)
class FGSM(LossGradientAttack):
    """Fast Gradient Sign Method: x + ε·sign(∇ₓL) under L∞; x + ε·∇ₓL/‖∇ₓL‖₂ (FGM) under L2.

    Threat model: L∞ or L2 ball of radius ``eps`` around x, intersected with [0, 1].
    Arguments: ``eps``, ``norm`` (linf | l2), ``loss`` (ce | margin), ``random_start`` (a uniform
    random point of the ball first, then the step, as in Wong et al. 2020), ``step_scale`` (the step
    is ``step_scale``·ε, projected back onto the ball: 1.25 with a random start in Wong et al.),
    ``seed``, ``precision``.
    Shapes: x N×C×H×W in [0, 1], y (and target) int64 N. One forward+backward pass per sample.
    Cost of the defaults: that one pass; ~1.5 s for 1000 Fashion-MNIST images on smallcnn on 2 CPU
    cores (L∞ ε = 0.1, the engine's clean pass and verification included).

    Example::

        from attacks import FGSM
        result = FGSM(eps=0.1)(model, x, y)
        robust_accuracy = 1 - result.success.float().mean()
    """

    name: ClassVar[str] = "fgsm"

    random_start: bool = False
    step_scale: float = 1.0

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, *, target, rng) -> Perturbed:
        threat = self.threat
        start = threat.random_point(x, rng) if self.random_start else x
        _, grad, _ = self.loss_and_grad(model, start, y, target)
        x_adv = threat.step(x, start, grad, self.step_scale * self.eps)
        return Perturbed(x_adv, queries=torch.full((len(x),), self.eot, dtype=torch.long, device=x.device))
