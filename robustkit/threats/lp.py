"""The Lp balls (L∞, L2, L1, L0): measure, project, draw random starts and turn gradients into steps."""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from robustkit.errors import ConfigError
from robustkit.per_sample_random import SampleRandom
from robustkit.registry import THREATS
from robustkit.threats.base import _TINY, ThreatModel, _flat_norm, clip_to_box, per_sample


@dataclass(frozen=True)
class LpBall(ThreatModel):
    """The ball ‖δ‖ ≤ ε of one norm: measured, projected onto, sampled and stepped in by gradient attacks."""

    gradient_steps: ClassVar[bool] = True
    family: ClassVar[str] = "Lp"
    family_order: ClassVar[int] = 0  # the Lp balls are stepped in by gradients and grouped as one family (L0 differs)

    @abstractmethod
    def norm(self, delta: Tensor) -> Tensor:
        """Per-sample norm of ``delta`` (float32, shape N)."""

    @abstractmethod
    def project(self, delta: Tensor) -> Tensor:
        """The nearest point of the ball (for L2, the radial projection)."""

    @abstractmethod
    def random_init(self, x: Tensor, rng: SampleRandom) -> Tensor:
        """A random δ inside the ball, drawn uniformly; row i from ``rng``'s sample i alone."""

    @abstractmethod
    def normalize_grad(self, grad: Tensor) -> Tensor:
        """The steepest-ascent direction of unit norm for this ball."""

    def clip(self, x: Tensor, x_adv: Tensor) -> Tensor:
        """``x_adv`` moved into the ball around ``x`` and then into the box [0, 1]."""
        return clip_to_box(x + self.project(x_adv - x))

    def random_point(self, x: Tensor, rng: SampleRandom) -> Tensor:
        """A random start: x plus a uniform draw from the ball, inside [0, 1]."""
        return clip_to_box(x + self.random_init(x, rng))

    def step(self, x: Tensor, x_adv: Tensor, grad: Tensor, size: float) -> Tensor:
        """One projected ascent step: ``size`` along the steepest direction of ``grad``, then ``clip``.

        The one update rule of FGSM, PGD and the inner maximisations of the defenses.
        """
        return clip_to_box(x + self.project(x_adv - x + size * self.normalize_grad(grad)))

    def tolerance(self, x: Tensor) -> float:
        """Slack for float rounding when checking ‖x_adv − x‖ ≤ ε in x's dtype.

        Rounding x + δ (a value ≤ 1) costs at most half an ulp of 0.5, i.e. finfo.eps/4, per
        coordinate, and ε itself rounds by half a relative ulp; the slack is twice that.
        float32: ≈ 7e-8 at ε = 0.1; bfloat16: ≈ 0.004 at ε = 8/255.
        """
        return torch.finfo(x.dtype).eps * (0.5 + self.eps)

    def contains(self, x: Tensor, x_adv: Tensor, evidence: dict[str, Tensor] | None = None) -> Tensor:
        """Per sample: ‖x_adv − x‖ ≤ ε, within the stated rounding tolerance (no evidence needed)."""
        return self.norm(x_adv.float() - x.float()) <= self.eps + self.tolerance(x)

    def size(self, x: Tensor, x_adv: Tensor, evidence: dict[str, Tensor] | None = None) -> Tensor:
        return self.norm(x_adv - x)


@THREATS.register
@dataclass(frozen=True)
class Linf(LpBall):
    """Every pixel value may move by at most ``eps`` (the box ‖δ‖∞ ≤ ε)."""

    name: ClassVar[str] = "linf"
    default: ClassVar[bool] = True
    trains_defenses: ClassVar[bool] = True
    latex: ClassVar[str] = r"$\ell_\infty$"

    @classmethod
    def default_eps(cls, channels: int) -> float:
        return 0.1 if channels == 1 else 8 / 255  # MNIST-like grey images; colour (CIFAR, ImageNet)

    def norm(self, delta: Tensor) -> Tensor:
        return delta.flatten(1).abs().amax(dim=1).float()

    def project(self, delta: Tensor) -> Tensor:
        return delta.clamp(-self.eps, self.eps)

    def random_init(self, x: Tensor, rng: SampleRandom) -> Tensor:
        return ((2 * rng.rand(*x.shape[1:]) - 1) * self.eps).to(x.dtype)

    def normalize_grad(self, grad: Tensor) -> Tensor:
        return grad.sign()

    def whole_box_budget(self, image_shape: tuple[int, ...]) -> tuple[float, str]:
        return 1.0, "1"


DEFAULT_NORM = Linf.name  # what attacks, defenses and suites assume where no threat model is named (``default``)


@THREATS.register
@dataclass(frozen=True)
class L2(LpBall):
    """The perturbation's Euclidean length is at most ``eps`` (‖δ‖₂ ≤ ε)."""

    name: ClassVar[str] = "l2"
    trains_defenses: ClassVar[bool] = True
    latex: ClassVar[str] = r"$\ell_2$"

    @classmethod
    def default_eps(cls, channels: int) -> float:
        return 1.5 if channels == 1 else 0.5

    def norm(self, delta: Tensor) -> Tensor:
        return _flat_norm(delta, 2)

    def project(self, delta: Tensor) -> Tensor:
        factor = (self.eps / self.norm(delta).clamp_min(_TINY)).clamp(max=1.0)
        return delta * per_sample(factor, delta)

    def random_init(self, x: Tensor, rng: SampleRandom) -> Tensor:
        direction = rng.randn(*x.shape[1:])
        direction = direction / per_sample(_flat_norm(direction, 2).clamp_min(_TINY), direction)
        dims = x[0].numel()
        radius = self.eps * rng.rand().view(-1) ** (1.0 / dims)
        return (direction * per_sample(radius, direction)).to(x.dtype)

    def normalize_grad(self, grad: Tensor) -> Tensor:
        # in float32: 1e-12 underflows to 0 in float16, and 0/0 would poison the iterate with NaN
        g = grad.float()
        return (g / per_sample(_flat_norm(g, 2).clamp_min(_TINY), g)).to(grad.dtype)

    def tolerance(self, x: Tensor) -> float:
        # per-coordinate rounding errors of x + δ (≤ finfo.eps/4 each), at worst aligned: √d of them
        return torch.finfo(x.dtype).eps * (0.5 * math.sqrt(x[0].numel()) + self.eps)

    def whole_box_budget(self, image_shape: tuple[int, ...]) -> tuple[float, str]:
        dims = math.prod(image_shape)
        return math.sqrt(dims), f"the box's diameter √{dims} = {math.sqrt(dims):.4g}"


@THREATS.register
@dataclass(frozen=True)
class L1(LpBall):
    """The perturbation's absolute values sum to at most ``eps`` (‖δ‖₁ ≤ ε): sparse changes are cheap.

    ``clip`` is the exact Euclidean projection onto the L1 ball intersected with the box [0, 1]
    (Croce & Hein, "Mind the box", ICML 2021): projecting onto the ball and then clipping to the box,
    as the other balls do, would waste budget on coordinates the box then cuts off.
    """

    name: ClassVar[str] = "l1"
    latex: ClassVar[str] = r"$\ell_1$"
    step_fraction: ClassVar[float] = 0.05  # share of coordinates a plain gradient step moves (``normalize_grad``)

    @classmethod
    def default_eps(cls, channels: int) -> float:
        # grey 28×28: ε = 10, the MNIST budget of Tramèr & Boneh (NeurIPS 2019) and the L1 literature after it;
        # colour: ε = 12, RobustBench's and Croce & Hein's CIFAR-10 budget
        return 10.0 if channels == 1 else 12.0

    def norm(self, delta: Tensor) -> Tensor:
        return _flat_norm(delta, 1)

    def project(self, delta: Tensor) -> Tensor:
        return (delta.sign() * _shrink_to_budget(delta.abs(), torch.full_like(delta, math.inf), self.eps)).to(
            delta.dtype
        )

    def clip(self, x: Tensor, x_adv: Tensor) -> Tensor:
        """The nearest point to ``x_adv`` in {x + δ : ‖δ‖₁ ≤ ε} ∩ [0, 1]^d (exact, not ball then box)."""
        delta = x_adv - x
        room = torch.where(delta > 0, 1 - x, x)  # how far each coordinate may move in the direction asked
        return clip_to_box(x + (delta.sign() * _shrink_to_budget(delta.abs(), room, self.eps)).to(x.dtype))

    def step(self, x: Tensor, x_adv: Tensor, grad: Tensor, size: float | Tensor) -> Tensor:
        """A sparse ascent step among the coordinates the box lets move that way, then the exact projection
        onto the ball ∩ box (``clip``): a sparse step spent on pixels already at 0 or 1 would be lost."""
        blocked = ((x_adv >= 1) & (grad > 0)) | ((x_adv <= 0) & (grad < 0))
        return self.clip(x, x_adv + size * self.normalize_grad(grad.masked_fill(blocked, 0)))

    def random_init(self, x: Tensor, rng: SampleRandom) -> Tensor:
        # uniform on the L1 sphere: exponential magnitudes with random signs, normalised (a flat Dirichlet);
        # the radius ε·U^(1/d) makes the draw uniform in the ball
        magnitude = -torch.log1p(-rng.rand(*x.shape[1:]))
        signed = magnitude * (2 * (rng.rand(*x.shape[1:]) < 0.5).to(magnitude.dtype) - 1)
        direction = signed / per_sample(_flat_norm(signed, 1).clamp_min(_TINY), signed)
        radius = self.eps * rng.rand().view(-1) ** (1.0 / x[0].numel())
        return (direction * per_sample(radius, direction)).to(x.dtype)

    def normalize_grad(self, grad: Tensor) -> Tensor:
        """The L1 steepest ascent, made sparse: ``sparse_direction`` on a fixed share ``step_fraction``."""
        return self.sparse_direction(grad, torch.full((len(grad),), self.step_fraction, device=grad.device))

    @staticmethod
    def sparse_direction(grad: Tensor, fraction: Tensor) -> Tensor:
        """sign(grad) on each sample's share ``fraction`` (N) of coordinates with the largest |grad|, scaled
        to unit L1 norm.

        The exact L1 steepest ascent moves the single largest coordinate, which the box soon stops; a
        top-k share (SLIDE, Tramèr & Boneh 2019; APGD-L1 adapts k) keeps steps useful. Ties at the
        threshold are all kept, as in the official APGD-L1.
        """
        flat = grad.flatten(1).float()
        dims = flat.shape[1]
        at = ((1 - fraction) * dims).clamp(0, dims - 1).long()
        threshold = flat.abs().sort(dim=1).values.gather(1, at.view(-1, 1))
        signs = torch.where(flat.abs() >= threshold, flat.sign(), torch.zeros_like(flat))
        return (signs / (signs.abs().sum(1, keepdim=True) + 1e-10)).view_as(grad).to(grad.dtype)

    def tolerance(self, x: Tensor) -> float:
        # per-coordinate rounding errors of x + δ (≤ finfo.eps/4 each), at worst all of one sign: d of them
        return torch.finfo(x.dtype).eps * (0.5 * x[0].numel() + self.eps)

    def whole_box_budget(self, image_shape: tuple[int, ...]) -> tuple[float, str]:
        dims = math.prod(image_shape)
        return float(dims), f"the box's L1 diameter d = {dims}"


def _shrink_to_budget(size: Tensor, room: Tensor, eps: float) -> Tensor:
    """Per sample, the magnitudes min(max(size − λ, 0), room) with the smallest λ ≥ 0 whose sum is ≤ ``eps``.

    This is the projection of magnitudes ``size`` ≥ 0 onto {‖m‖₁ ≤ ε, 0 ≤ m ≤ room} (Croce & Hein 2021,
    Lemma 3.1; ``room`` = inf gives the plain L1 ball). The sum is piecewise linear and non-increasing in
    λ, with kinks at size − room (a coordinate leaves its cap) and at size (it reaches 0): sort the kinks,
    add up the sum at each from the slopes between them, and interpolate in the segment that reaches ε.
    """
    shape, size, room = size.shape, size.flatten(1).float(), room.flatten(1).float()
    capped = torch.minimum(size, room)
    over = capped.sum(1) > eps
    if not over.any():
        return capped.view(shape)
    s, r = size[over], room[over]
    kinks = torch.cat([(s - r).clamp_min(0), s], 1)
    kinks, order = kinks.sort(dim=1)
    entering = torch.where(order < s.shape[1], 1.0, -1.0)  # a kink of the first kind adds a coordinate to the slope
    active = entering.cumsum(1)  # coordinates shrinking with λ just after each kink
    drop = torch.cat([torch.zeros_like(kinks[:, :1]), ((kinks[:, 1:] - kinks[:, :-1]) * active[:, :-1]).cumsum(1)], 1)
    total = capped[over].sum(1, keepdim=True) - drop  # the sum at each kink
    first = (total > eps).sum(1, keepdim=True) - 1  # the last kink still above ε (total only falls)
    lam = kinks.gather(1, first) + (total.gather(1, first) - eps) / active.gather(1, first).clamp_min(1)
    shrunk = torch.minimum((s - lam).clamp_min(0), r)
    # float rounding may leave the sum a hair above ε; scaling toward 0 stays in the box
    shrunk = shrunk * (eps / shrunk.sum(1, keepdim=True).clamp_min(_TINY)).clamp(max=1.0)
    out = capped.clone()
    out[over] = shrunk
    return out.view(shape)


@THREATS.register
@dataclass(frozen=True)
class L0(LpBall):
    """At most ``eps`` pixel positions (all channels of a pixel count as one) may change, to anything in [0, 1]."""

    name: ClassVar[str] = "l0"
    latex: ClassVar[str] = r"$\ell_0$"
    gradient_steps: ClassVar[bool] = False  # a count of pixels: no gradient step moves within it
    family: ClassVar[str] = "L0"
    family_order: ClassVar[int] = 1
    budget_axis: ClassVar[str] = "ε (l0: pixels changed)"
    whole_budget: ClassVar[bool] = True

    @classmethod
    def default_eps(cls, channels: int) -> float:
        return 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eps != int(self.eps) or self.eps < 1:
            raise ConfigError(f"the L0 budget is a whole number of pixels ≥ 1, got {self.eps}")

    def norm(self, delta: Tensor) -> Tensor:
        return (delta.abs().amax(dim=1) > 0).flatten(1).sum(1).float()  # changed pixel positions

    def project(self, delta: Tensor) -> Tensor:
        """Keep the ``eps`` pixels that change most (summed over channels); zero the rest."""
        k = int(self.eps)
        strength = delta.abs().sum(dim=1).flatten(1)  # N × H·W
        if strength.shape[1] <= k:
            return delta
        keep = torch.zeros_like(strength, dtype=torch.bool).scatter_(1, strength.topk(k, dim=1).indices, True)
        return delta * keep.view(delta.shape[0], 1, *delta.shape[2:]).to(delta.dtype)

    def random_init(self, x: Tensor, rng: SampleRandom) -> Tensor:
        return torch.zeros_like(x)

    def normalize_grad(self, grad: Tensor) -> Tensor:
        raise ConfigError("L0 attacks here are search-based (one-pixel); gradient steps need linf or l2")

    def tolerance(self, x: Tensor) -> float:
        return 0.0  # pixel counts are exact

    def whole_box_budget(self, image_shape: tuple[int, ...]) -> tuple[float, str]:
        pixels = math.prod(image_shape[-2:])
        return float(pixels), f"every pixel ({pixels})"
