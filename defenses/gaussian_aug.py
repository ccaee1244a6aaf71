"""Gaussian data augmentation (Cohen, Rosenfeld & Kolter, ICML 2019): the base classifier of randomized smoothing.

Every training input gets fresh, unclipped N(0, σ²) noise, the same noise the smoothed classifier adds
when it certifies (``robustkit certify``), so the base model learns to classify noisy images. It differs
from the inference-time ``gaussian-noise`` defense, which clips its noise to [0, 1] and trains nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustkit.defense import Defense
from robustkit.errors import ConfigError
from robustkit.registry import DEFENSES
from robustkit.training.loop import LossFn, StepContext, StepOutput


@DEFENSES.register
@dataclass(frozen=True, kw_only=True)
class GaussianAugmentation(Defense):
    """Noise training for randomized smoothing: cross-entropy on x + N(0, σ²), noise not clipped.

    Arguments: ``sigma`` (0.25, pixels; certify at the same σ). ``eps`` and ``norm`` are accepted
    (commands pass the evaluation's budget) and ignored: the noise level is the setting.
    Example: ``robustkit train --model lenet5 --defense gaussian-aug -o sigma=0.25``.
    """

    name: ClassVar[str] = "gaussian-aug"

    eps: float = 0.0
    sigma: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            isinstance(self.sigma, bool)
            or not isinstance(self.sigma, (int, float))
            or not math.isfinite(self.sigma)
            or self.sigma <= 0
        ):
            raise ConfigError(f"gaussian-aug: sigma must be a finite number > 0, got {self.sigma!r}")

    def tag(self) -> str:
        return f"sigma{self.sigma:g}"

    def loss_fn(self) -> LossFn:
        sigma = float(self.sigma)

        def loss(model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
            noise = torch.randn(x.shape, generator=ctx.generator, device=x.device, dtype=torch.float32)
            logits = model(x + sigma * noise.to(x.dtype))
            clean_logits = model(x) if ctx.want_clean else None
            return StepOutput(F.cross_entropy(logits.float(), y), logits, clean_logits)

        return loss
