"""The fooling-image threat model (Nguyen, Yosinski & Clune, CVPR 2015): no clean image, only a class and a confidence.

A fooling image for class c is any image in [0, 1] that the model labels c with softmax probability
at least the threshold (``eps``, default 0.99). There is nothing to stay close to, so ``contains``
checks only what needs no model: the box, and that the attack named the class it sought
(``evidence["target"]``). Whether the model really is that confident is a question for the model:
``confirm_fooling`` asks it afresh, and the fooling evaluation applies it to every image it counts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from robustkit.errors import ConfigError
from robustkit.modes import eval_mode
from robustkit.predict import verdict_draws
from robustkit.random_forward import fixed_draws
from robustkit.registry import THREATS
from robustkit.threats.base import ThreatModel


@THREATS.register
@dataclass(frozen=True)
class Fooling(ThreatModel):
    """Any image in [0, 1]; it counts when the model gives the sought class probability ≥ ``eps``.

    ``eps`` is the confidence threshold in (0, 1]. The attack reports the class each image seeks as
    ``evidence["target"]`` (int64 N).
    """

    name: ClassVar[str] = "fooling"
    family_order: ClassVar[int] = 4
    budget_axis: ClassVar[str] = "confidence threshold"
    clean_images: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.eps <= 1:
            raise ConfigError(f"a fooling threshold is a probability in (0, 1], got {self.eps:g}")

    @classmethod
    def default_eps(cls, channels: int) -> float:
        return 0.99  # Nguyen et al.'s "≥ 99.6 % confidence" images, rounded to the usual 99 %

    def label(self) -> str:
        return f"{self.name} p≥{self.eps:.4g}"

    def contains(self, x: Tensor, x_adv: Tensor, evidence: dict[str, Tensor] | None = None) -> Tensor:
        """Per sample: inside [0, 1] (NaN fails) and a sought class reported as a whole number ≥ 0."""
        in_box = ((x_adv >= 0) & (x_adv <= 1)).flatten(1).all(1)
        target = (evidence or {}).get("target")
        if target is None or target.shape != (len(x_adv),) or target.is_floating_point():
            return torch.zeros(len(x_adv), dtype=torch.bool, device=x_adv.device)
        return in_box & (target.to(x_adv.device) >= 0)

    def size(self, x: Tensor, x_adv: Tensor, evidence: dict[str, Tensor] | None = None) -> Tensor:
        """NaN: nothing is spent on a distance; the confidence is the model's to say (``confirm_fooling``)."""
        return torch.full((len(x_adv),), float("nan"), device=x_adv.device)


@torch.no_grad()
def confirm_fooling(model: nn.Module, images: Tensor, targets: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """Per image: the model's softmax probability of ``targets`` (float32 N) and whether the image is a fooling image.

    A fresh pass in eval mode, in float32 outside any autocast (a reduced-precision model is run as a
    float32 copy; the model itself is never changed): passed means inside [0, 1], ``targets`` is the
    argmax and its probability is ≥ ``threshold``. A randomised model's probabilities are the mean over
    its verdict draws (``predict``'s), from their fixed seeds.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else images.device
    if param is not None and param.dtype != torch.float32:
        model = copy.deepcopy(model).float()
    x = images.to(device, torch.float32)
    targets = targets.to(device).long()
    with eval_mode(model), torch.autocast(device.type, enabled=False), fixed_draws(model):
        draws = verdict_draws(model)
        probs = sum(model(x).float().softmax(1) for _ in range(draws)) / draws
    confidence = probs.gather(1, targets[:, None]).squeeze(1)
    in_box = ((x >= 0) & (x <= 1)).flatten(1).all(1)
    passed = in_box & (probs.argmax(1) == targets) & (confidence >= threshold)
    return confidence.to(images.device), passed.to(images.device)
