"""Threat models: the ε-ball an attack may search, as small objects (after Foolbox).

Each knows how to measure a perturbation, project onto its ball, draw a random start and turn a
gradient into a step direction. Inputs live in the box [0, 1]; ``clip_to_box`` is the other half of
every projection.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import torch
from torch import Tensor

from robustkit.errors import ConfigError
from robustkit.sample_random import SampleRandom

_TINY = 1e-12


def _flat_norm(t: Tensor, p: float) -> Tensor:
    return t.flatten(1).float().norm(p=p, dim=1)


def per_sample(values: Tensor, like: Tensor) -> Tensor:
    return values.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)


@dataclass(frozen=True)
class ThreatModel(ABC):
    """The ball ‖δ‖ ≤ ε of one norm."""

    eps: float
    name: ClassVar[str]

    def __post_init__(self) -> None:
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps >= 0):
            raise ConfigError(f"eps must be a finite number ≥ 0, got {self.eps!r}")

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

    def contains(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Per-sample: is ‖x_adv − x‖ ≤ ε (within the stated rounding tolerance)?"""
        return self.norm(x_adv.float() - x.float()) <= self.eps + self.tolerance(x)


@dataclass(frozen=True)
class Linf(ThreatModel):
    name: ClassVar[str] = "linf"

    def norm(self, delta: Tensor) -> Tensor:
        return delta.flatten(1).abs().amax(dim=1).float()

    def project(self, delta: Tensor) -> Tensor:
        return delta.clamp(-self.eps, self.eps)

    def random_init(self, x: Tensor, rng: SampleRandom) -> Tensor:
        return ((2 * rng.rand(*x.shape[1:]) - 1) * self.eps).to(x.dtype)

    def normalize_grad(self, grad: Tensor) -> Tensor:
        return grad.sign()


@dataclass(frozen=True)
class L2(ThreatModel):
    name: ClassVar[str] = "l2"

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


@dataclass(frozen=True)
class L0(ThreatModel):
    """At most ``eps`` pixel positions (all channels of a pixel count as one) may change, to anything in [0, 1]."""

    name: ClassVar[str] = "l0"

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


THREAT_MODELS: dict[str, type[ThreatModel]] = {"linf": Linf, "l2": L2, "l0": L0}


def threat_model(norm: str, eps: float) -> ThreatModel:
    """``threat_model("linf", 8/255)``; an unknown norm is a one-line error."""
    cls = THREAT_MODELS.get(norm.lower().replace("∞", "inf"))
    if cls is None:
        raise ConfigError(f"unknown norm '{norm}' (choose from {', '.join(THREAT_MODELS)})")
    return cls(float(eps))


def clip_to_box(x: Tensor) -> Tensor:
    """Inputs are images in [0, 1]."""
    return x.clamp(0.0, 1.0)


def parse_eps(text: str | float, what: str = "eps") -> float:
    """``0.1``, ``8/255`` or ``8 / 255`` → float; anything else is a one-line error naming ``what``."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        try:
            value = float(Fraction(text.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"{what} must be a number like 0.1 or a fraction like 8/255, got '{text}'") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{what} must be finite and ≥ 0, got {text}")
    return value


def default_eps(norm: str, channels: int) -> float:
    """The field's usual budgets: MNIST-like grey images 0.1 (L∞) / 1.5 (L2); colour 8/255 / 0.5; L0 one pixel."""
    grey = channels == 1
    return {"linf": 0.1 if grey else 8 / 255, "l2": 1.5 if grey else 0.5, "l0": 1}[norm.lower()]
