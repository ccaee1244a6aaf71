"""The adversarial-patch threat model: anything may change, but only inside one s×s window.

Brown et al. ("Adversarial Patch", 2017) and per-image patches (LaVAN, Sparse-RS) give up the small
norm for locality: the pixels of one square window become arbitrary values in [0, 1], the rest of the
image stays exactly as it was. The check finds the window itself (the changed pixels' bounding box),
so it needs no evidence from the attack and cannot be told a wrong location.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from robustkit.errors import ConfigError
from robustkit.registry import THREATS
from robustkit.threats.base import ThreatModel


@THREATS.register
@dataclass(frozen=True)
class Patch(ThreatModel):
    """Pixels may change to anything in [0, 1] inside one ``eps`` × ``eps`` window, placed anywhere.

    ``eps`` is the window's side in pixels. The location is free (the attack chooses it); a fixed
    location is not offered.
    """

    name: ClassVar[str] = "patch"
    family_order: ClassVar[int] = 2
    budget_axis: ClassVar[str] = "patch side (pixels)"
    whole_budget: ClassVar[bool] = True

    @classmethod
    def default_eps(cls, channels: int) -> float:
        # 4×4 is 2 % of a 28×28 image, Brown et al.'s smallest patch share (they sweep 2–50 % of the image);
        # on 32×32 colour images a 4×4 patch is 1.6 %
        return 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eps != int(self.eps) or self.eps < 1:
            raise ConfigError(f"a patch's side is a whole number of pixels ≥ 1, got {self.eps:g}")

    @property
    def side(self) -> int:
        return int(self.eps)

    def check_fits(self, image_shape: Sequence[int]) -> None:
        """A one-line error when the window is larger than images of ``image_shape``."""
        height, width = image_shape[-2:]
        if self.side > height or self.side > width:
            raise ConfigError(f"a patch of side {self.side} does not fit a {height}×{width} image")

    def whole_box_budget(self, image_shape: tuple[int, ...]) -> tuple[float, str]:
        side = max(image_shape[-2:])
        return float(side), f"the image's side ({side})"

    def contains(self, x: Tensor, x_adv: Tensor, evidence: dict[str, Tensor] | None = None) -> Tensor:
        """Per sample: every changed pixel (any channel) lies in one s×s window; found, not taken from ``evidence``."""
        self.check_fits(x.shape)
        height, width = changed_extent(x, x_adv)
        return (height <= self.side) & (width <= self.side)

    def size(self, x: Tensor, x_adv: Tensor, evidence: dict[str, Tensor] | None = None) -> Tensor:
        """Side of the smallest square window holding every change (0 for none)."""
        height, width = changed_extent(x, x_adv)
        return torch.maximum(height, width).float()


def changed_extent(x: Tensor, x_adv: Tensor) -> tuple[Tensor, Tensor]:
    """Height and width (int64 N) of the bounding box of the pixels where ``x_adv`` differs from ``x``; 0 if none."""
    changed = (x_adv.float() != x.float()).any(dim=1)  # N×H×W
    return _span(changed.any(dim=2)), _span(changed.any(dim=1))


def _span(hit: Tensor) -> Tensor:
    """Per row of a bool N×L mask: last True position − first + 1, or 0 when there is none."""
    positions = torch.arange(hit.shape[1], device=hit.device)
    first = torch.where(hit, positions, hit.shape[1]).amin(dim=1)
    last = torch.where(hit, positions, -1).amax(dim=1)
    return (last - first + 1).clamp_min(0)
