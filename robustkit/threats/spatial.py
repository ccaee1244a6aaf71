"""The spatial threat model: a small rotation and translation (Engstrom et al., ICML 2019), checked by re-rendering.

An image may be rotated by at most ``eps`` degrees about its centre, shifted by at most
``translation`` pixels along each axis and, if ``scale`` > 0, zoomed by a factor in
[1 − scale, 1 + scale]. Nothing about the result is small in any Lp norm, so the check cannot be a
norm: the attack reports each sample's transform (its evidence) and ``contains`` renders x with it
again and compares.

Rendering conventions (``render``): one affine resampling with bilinear interpolation and zero
padding (uncovered pixels are black, as in Engstrom et al.), ``align_corners=False`` (pixel i's centre
sits at i + ½ of an image [0, W], so the rotation centre is the image's centre and an integer shift
moves whole pixels); a positive angle turns the picture counter-clockwise as displayed (row 0 on
top): the sign of ``torchvision.transforms.functional.rotate``'s angle and the opposite of
``TF.affine``'s (clockwise), so ``rotation`` r renders as ``TF.affine(x, angle=-r, translate=[dx, dy],
scale=1, shear=0)`` with bilinear interpolation; positive dx/dy move it right/down; rotation and scaling about the centre come first, then the
shift. It runs in float32 outside any autocast, whatever the input's dtype.
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
from robustkit.threats.base import ThreatModel

PARAMETERS = ("rotation", "dx", "dy")  # the evidence every spatial attack reports; "scale" too when scaling


def render(x: Tensor, angle_deg: Tensor, dx: Tensor, dy: Tensor, scale: Tensor | None = None) -> Tensor:
    """Images x (N×C×H×W) turned by ``angle_deg``, zoomed by ``scale`` (default 1), shifted by (dx, dy) pixels.

    Every parameter is one value per image (shape N). The result has x's dtype and device.
    """
    n, _, h, w = x.shape
    with torch.autocast(x.device.type, enabled=False):
        angle = torch.deg2rad(angle_deg.to(x.device, torch.float32))
        cos, sin = angle.cos(), angle.sin()
        zoom = torch.ones_like(cos) if scale is None else scale.to(x.device, torch.float32)
        tx, ty = dx.to(x.device, torch.float32), dy.to(x.device, torch.float32)
        # Output offset q (pixels from the centre) shows input offset R⁻¹(q − t)/s, in grid_sample's
        # normalised units u = 2q/W (x), 2q/H (y); R turns counter-clockwise on a y-down screen.
        theta = torch.stack(
            [
                torch.stack([cos, -sin * h / w, -2 / w * (cos * tx - sin * ty)], 1),
                torch.stack([sin * w / h, cos, -2 / h * (sin * tx + cos * ty)], 1),
            ],
            1,
        ) / zoom.view(n, 1, 1)
        grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return sample(x, grid)


def sample(x: Tensor, grid: Tensor) -> Tensor:
    """x (N×C×H×W) read at ``grid`` (N×H×W×2, grid_sample's normalised (x, y)): the one resampling of every render.

    Bilinear, zero fill, ``align_corners=False``, in float32 outside any autocast; x's dtype back.
    """
    with torch.autocast(x.device.type, enabled=False):
        out = F.grid_sample(x.float(), grid.float(), mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.to(x.dtype)


def render_tolerance(x: Tensor, x_adv: Tensor) -> float:
    """Max |x_adv − render(x, params)| accepted, per pixel.

    Re-rendering the same parameters can differ from the attack's own rendering only by float32
    rounding of the sampling coordinates (another batch size, another device): a few ulps of
    normalised coordinates up to ~2, i.e. ~2⁻²² of the image's half-width in pixels, times the
    largest jump between neighbouring pixels (1). Hence max(H, W)·2⁻²⁰ (2.7e-5 at 28 px, 2e-4 at
    224 px), plus one unit of rounding when x_adv is stored in a lower precision than float32. Any
    tampering larger than that (a hundredth of a grey level) is refused.
    """
    slack = max(x.shape[-2:]) * 2.0**-20
    if torch.finfo(x_adv.dtype).bits < 32:
        slack += torch.finfo(x_adv.dtype).eps
    return slack


@THREATS.register
@dataclass(frozen=True)
class Spatial(ThreatModel):
    """Rotation by at most ``eps`` degrees, shift by at most ``translation`` pixels per axis, zoom by at most ``scale``.

    ``contains`` needs the attack's evidence: per sample ``rotation`` (degrees), ``dx``, ``dy`` (pixels)
    and, when ``scale`` > 0, ``scale`` (the factor); without it nothing is shown to be allowed.
    """

    translation: float = 3.0  # pixels, per axis
    scale: float = 0.0  # relative zoom: the factor lies in [1 − scale, 1 + scale]; 0 = no zoom

    name: ClassVar[str] = "spatial"
    family_order: ClassVar[int] = 3
    budget_axis: ClassVar[str] = "max rotation (degrees)"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eps > 180:
            raise ConfigError(
                f"a rotation budget beyond 180° repeats angles already allowed: eps must be ≤ 180, got {self.eps:g}"
            )
        for what, value, top in (("translation", self.translation, math.inf), ("scale", self.scale, 1.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < top:
                bound = "a number of pixels ≥ 0" if top == math.inf else "a relative zoom in [0, 1)"
                raise ConfigError(f"the spatial {what} must be {bound}, got {value!r}")
            object.__setattr__(self, what, float(value))  # 3 and 3.0 must describe (and key) the same cell

    @classmethod
    def default_eps(cls, channels: int) -> float:
        return 30.0  # Engstrom et al.'s ±30°, for grey and colour images alike

    def label(self) -> str:
        zoom = f" ±{self.scale:.0%} zoom" if self.scale else ""
        return f"{self.name} ±{self.eps:.4g}° ±{self.translation:.4g}px{zoom}"

    def check_image(self, shape: torch.Size) -> None:
        """A shift as large as the image moves the whole picture off the canvas: refuse it in one line."""
        h, w = shape[-2:]
        if self.translation >= min(h, w):
            raise ConfigError(
                f"a translation of {self.translation:g} px is not smaller than the {h}×{w} image: "
                "it would move the whole picture off the canvas"
            )

    def bounds(self) -> dict[str, tuple[float, float]]:
        """The interval each evidence parameter must lie in."""
        bounds = {
            "rotation": (-self.eps, self.eps),
            "dx": (-self.translation, self.translation),
            "dy": (-self.translation, self.translation),
        }
        if self.scale:
            bounds["scale"] = (1 - self.scale, 1 + self.scale)
        return bounds

    def contains(self, x: Tensor, x_adv: Tensor, evidence: dict[str, Tensor] | None = None) -> Tensor:
        """Per sample: the reported transform is within the budget and x_adv is x rendered with it.

        Bounds get a float32 slack of a few ulps (4·2⁻²³ relative); the rendering check uses
        ``render_tolerance``.
        """
        n = len(x)
        evidence = evidence or {}
        if any(k not in evidence for k in self.bounds()):
            return torch.zeros(n, dtype=torch.bool, device=x.device)
        params = {k: evidence[k].to(x.device, torch.float32).view(n) for k in (*PARAMETERS, "scale") if k in evidence}
        ok = torch.ones(n, dtype=torch.bool, device=x.device)
        bounds = {"scale": (1.0, 1.0), **self.bounds()}  # a reported zoom with scale = 0 must be 1
        for key, value in params.items():
            low, high = bounds[key]
            slack = 4 * torch.finfo(torch.float32).eps * max(1.0, abs(low), abs(high))
            ok &= (value >= low - slack) & (value <= high + slack)  # NaN fails both
        expected = render(x, params["rotation"], params["dx"], params["dy"], params.get("scale")).float()
        close = (x_adv.float() - expected).abs().flatten(1).amax(1) <= render_tolerance(x, x_adv)
        return ok & close

    def size(self, x: Tensor, x_adv: Tensor, evidence: dict[str, Tensor] | None = None) -> Tensor:
        """|rotation| in degrees (NaN without evidence)."""
        if not evidence or "rotation" not in evidence:
            return torch.full((len(x),), float("nan"), device=x.device)
        return evidence["rotation"].float().abs().view(len(x))
