"""The flow threat model (stAdv; Xiao et al., ICLR 2018): a smooth per-pixel displacement field, checked by re-warping.

x_adv is x warped by a flow field f (N×2×H×W, in pixels; channel 0 the horizontal displacement u,
channel 1 the vertical v): each output pixel p shows the input sampled bilinearly at p + f(p), zero
fill outside the image (``warp``, through ``spatial.sample``: the spatial threat model's resampling
conventions). So a constant f = (1, 0) moves the picture one pixel left.

The budget ``eps`` bounds the flow's smoothness loss, exactly as stAdv writes it:
L_flow(f) = Σ_p Σ_{q ∈ N(p)} √(‖u_p − u_q‖² + ‖v_p − v_q‖²), N(p) p's 4-neighbours inside the image
(a border pixel has fewer; nothing is padded), so every adjacent pair counts twice. The measure has
no ``tiny`` under the root: it is then exactly positively homogeneous (L_flow(c·f) = c·L_flow(f),
c ≥ 0), and projecting onto the budget is scaling f by min(1, eps / L_flow(f)). An optimiser
differentiating it at f = 0 passes a ``tiny`` (the root's gradient there is infinite).

L_flow ignores a constant part of f (a shift costs nothing), so each displacement component is also
bounded by ``max_displacement`` pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from robustkit.errors import ConfigError
from robustkit.registry import THREATS
from robustkit.threats.base import ThreatModel, per_sample
from robustkit.threats.spatial import render_tolerance, sample

DEFAULT_EPS = 100.0  # see Flow.default_eps
_BUDGET_SLACK = 2.0**-16  # relative: float32 pairwise sums of 4HW terms err by ~log2(4HW)·2⁻²⁴, ≤ 2⁻¹⁹ up to 224²


def warp(x: Tensor, flow: Tensor) -> Tensor:
    """Images x (N×C×H×W) with each output pixel sampled at its position + ``flow`` (N×2×H×W, pixels).

    Differentiable in ``flow``; float32 outside autocast; the result has x's dtype and device.
    """
    n, channels, h, w = x.shape
    with torch.autocast(x.device.type, enabled=False):
        identity = torch.eye(2, 3, device=x.device).expand(n, 2, 3)
        grid = F.affine_grid(identity, [n, channels, h, w], align_corners=False)
        to_unit = torch.tensor([2.0 / w, 2.0 / h], device=x.device)  # one pixel in grid_sample's units
        grid = grid + flow.to(x.device, torch.float32).permute(0, 2, 3, 1) * to_unit
    return sample(x, grid)


def flow_loss(flow: Tensor, tiny: float = 0.0) -> Tensor:
    """L_flow per sample (float32 N): Σ_p Σ_{q ∈ N(p)} √(Δu² + Δv² + ``tiny``), 4-neighbours inside the image."""
    f = flow.float()
    down = (f[:, :, 1:, :] - f[:, :, :-1, :]).square().sum(1)
    right = (f[:, :, :, 1:] - f[:, :, :, :-1]).square().sum(1)
    return 2 * ((down + tiny).sqrt().flatten(1).sum(1) + (right + tiny).sqrt().flatten(1).sum(1))


@THREATS.register
@dataclass(frozen=True)
class Flow(ThreatModel):
    """x warped by a flow field with smoothness loss L_flow ≤ ``eps`` and every component ≤ ``max_displacement`` px.

    ``contains`` needs the attack's evidence ``flow`` (N×2×H×W); without it nothing is shown to be allowed.
    """

    max_displacement: float = 1.0  # pixels, per component of every pixel's displacement

    name: ClassVar[str] = "flow"
    family: ClassVar[str] = "spatial"
    family_order: ClassVar[int] = 3  # beside Spatial, its family
    budget_axis: ClassVar[str] = "flow smoothness L_flow"

    def __post_init__(self) -> None:
        super().__post_init__()
        value = self.max_displacement
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
            raise ConfigError(f"the flow max_displacement must be a number of pixels > 0, got {value!r}")
        object.__setattr__(self, "max_displacement", float(value))  # 2 and 2.0 key the same cell

    @classmethod
    def default_eps(cls, channels: int) -> float:
        """L_flow ≤ 100 on 28×28: a mean neighbour difference of 0.03 px over the 3024 ordered pairs.

        Measured on 200 Fashion-MNIST test images, smallcnn (clean 0.90), stAdv's defaults (±1 px):
        robust accuracy 0.88 at 10, 0.735 at 50, 0.41 at 100 (also at ±2 px), 0.17 at 1000; the
        spatial attack's ±30° ±3 px leaves 0.00, ±10° ±1 px 0.55. The same number is used for colour
        images: a budget per image, not per channel.
        """
        return DEFAULT_EPS

    def label(self) -> str:
        return f"{self.name} L_flow≤{self.eps:.4g} ±{self.max_displacement:.4g}px"

    def check_image(self, shape: torch.Size) -> None:
        """Displacements as large as the image can sample anything from nothing: refuse them in one line."""
        h, w = shape[-2:]
        if self.max_displacement >= min(h, w):
            raise ConfigError(
                f"a flow max_displacement of {self.max_displacement:g} px is not smaller than the "
                f"{h}×{w} image: every pixel could be sampled from outside it"
            )

    def project(self, flow: Tensor) -> Tensor:
        """``flow`` made admissible: components clamped to ±max_displacement, then scaled by min(1, eps / L_flow)."""
        flow = flow.clamp(-self.max_displacement, self.max_displacement)
        factor = (self.eps / flow_loss(flow).clamp_min(1e-30)).clamp(max=1.0)
        return flow * per_sample(factor, flow)

    def contains(self, x: Tensor, x_adv: Tensor, evidence: dict[str, Tensor] | None = None) -> Tensor:
        """Per sample: L_flow ≤ eps·(1 + 2⁻¹⁶), |components| ≤ max_displacement (+4 ulps), x_adv = warp(x, flow).

        The image is compared with ``spatial.render_tolerance`` (the same float32 resampling argument).
        """
        n, (_, _, h, w) = len(x), x.shape
        flow = (evidence or {}).get("flow")
        if flow is None or tuple(flow.shape) != (n, 2, h, w):
            return torch.zeros(n, dtype=torch.bool, device=x.device)
        flow = flow.to(x.device, torch.float32)
        slack = 4 * torch.finfo(torch.float32).eps * max(1.0, self.max_displacement)
        bounded = (flow.abs() <= self.max_displacement + slack).flatten(1).all(1)  # NaN fails
        smooth = flow_loss(flow) <= self.eps * (1 + _BUDGET_SLACK)
        close = (x_adv.float() - warp(x, flow).float()).abs().flatten(1).amax(1) <= render_tolerance(x, x_adv)
        return bounded & smooth & close

    def size(self, x: Tensor, x_adv: Tensor, evidence: dict[str, Tensor] | None = None) -> Tensor:
        """L_flow of the reported flow (NaN without evidence)."""
        if not evidence or "flow" not in evidence:
            return torch.full((len(x),), float("nan"), device=x.device)
        return flow_loss(evidence["flow"])
