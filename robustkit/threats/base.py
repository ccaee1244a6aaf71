"""Threat models: what an attack may do to an input, as small registered objects (after Foolbox).

A threat model is named (``THREATS``, like every plugin kind) and holds its own budget. It says how
records and leaderboards name it (``describe``) and decides, for every example the engine counts,
whether it is allowed (``contains``). Inputs live in the box [0, 1]; ``clip_to_box`` is the other half
of every projection. This module holds the base and the lookups by name; the Lp balls are in ``lp``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from fractions import Fraction
from typing import Any, ClassVar

from torch import Tensor

from robustkit.errors import ConfigError, UnknownNameError
from robustkit.plugin_index import find
from robustkit.registry import THREATS

_TINY = 1e-12


def _flat_norm(t: Tensor, p: float) -> Tensor:
    return t.flatten(1).float().norm(p=p, dim=1)


def per_sample(values: Tensor, like: Tensor) -> Tensor:
    return values.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)


@dataclass(frozen=True)
class ThreatModel(ABC):
    """What an attack may do to an input: a named threat model, its budget ``eps`` and its settings.

    ``eps`` is the one number a suite sweeps and a leaderboard column is headed by (a radius, a pixel
    count, a patch side); further settings are further dataclass fields, part of ``describe``.
    """

    eps: float
    name: ClassVar[str]
    budget_axis: ClassVar[str] = "ε"  # what the budget measures, for plot axes
    whole_budget: ClassVar[bool] = False  # budgets are counts (pixels), not lengths
    gradient_steps: ClassVar[bool] = False  # gradient attacks (and adversarial training) can step in it
    family: ClassVar[str] = ""  # the leaderboard group its columns go in (default: its name)
    family_order: ClassVar[int] = 99  # where that group stands on a leaderboard, left to right (the same for a family)
    # False: attacks make images from nothing (fooling images); evaluated per class, not per clean sample
    clean_images: ClassVar[bool] = True
    default: ClassVar[bool] = False  # the one assumed where no threat model is named (``DEFAULT_NORM``)
    trains_defenses: ClassVar[bool] = False  # ``robustkit train`` offers it to adversarial training (--norm)
    latex: ClassVar[str] = ""  # its name as LaTeX tables write it (e.g. $\ell_\infty$); empty: the name as text

    def __post_init__(self) -> None:
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps >= 0):
            raise ConfigError(f"eps must be a finite number ≥ 0, got {self.eps!r}")

    @classmethod
    def default_eps(cls, channels: int) -> float:
        """The field's usual budget for images with ``channels`` channels."""
        raise ConfigError(f"the {cls.name} threat model has no default budget: give --eps")

    def describe(self) -> dict[str, Any]:
        """The threat model as plain values: what records store and cell keys hash (``norm``, ``eps``, settings)."""
        settings = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "eps"}
        return {"norm": self.name, "eps": self.eps, **settings}

    def label(self) -> str:
        """How a leaderboard column names it, e.g. ``linf ε=0.1``."""
        return f"{self.name} ε={self.eps:.4g}"

    @abstractmethod
    def contains(self, x: Tensor, x_adv: Tensor, evidence: dict[str, Tensor] | None = None) -> Tensor:
        """Per sample (bool N): is ``x_adv`` a change of ``x`` this threat model allows?

        ``evidence`` is what the attack reported beside x_adv (e.g. a spatial attack's transform
        parameters) for threat models whose check needs it.
        """

    @abstractmethod
    def size(self, x: Tensor, x_adv: Tensor, evidence: dict[str, Tensor] | None = None) -> Tensor:
        """Per sample (float32 N): how much budget ``x_adv`` uses, in ``eps``'s unit (results' ``norms``)."""

    def clip(self, x: Tensor, x_adv: Tensor) -> Tensor:
        """``x_adv`` made admissible where a projection exists; every threat model keeps [0, 1]."""
        return clip_to_box(x_adv)

    def check_fits(self, image_shape: Sequence[int]) -> None:  # noqa: B027  (a hook: most budgets fit any image)
        """A one-line error when the budget cannot be applied to images of ``image_shape`` (C×H×W or
        N×C×H×W; e.g. a patch larger than the image); most budgets fit any image."""

    def whole_box_budget(self, image_shape: tuple[int, ...]) -> tuple[float, str] | None:
        """The budget from which every image of [0, 1]^(C·H·W) is within reach of every other, and how
        to say it; None when no budget reaches that far (then robust accuracy is never 0 by construction)."""
        return None

    def widened(self, image_shape: tuple[int, ...]) -> ThreatModel:
        """The same threat model with a budget that reaches the whole box (itself where none does): where a
        minimum-norm attack's examples live, each then measured (``size``) rather than bounded by ``eps``."""
        whole = self.whole_box_budget(tuple(image_shape))
        return self if whole is None or whole[0] <= self.eps else replace(self, eps=whole[0])


def threat_model(norm: str, eps: float, **settings: Any) -> ThreatModel:
    """``threat_model("linf", 8/255)``: the registered threat model ``norm`` at budget ``eps``.

    ``settings`` are the threat model's own beyond the budget (none for the Lp balls). An unknown
    name is a one-line error that lists the registered ones.
    """
    cls = threat_class(norm)
    unknown = sorted(set(settings) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"the {cls.name} threat model has no setting '{unknown[0]}'")
    return cls(float(eps), **settings)


def threat_class(norm: str) -> type[ThreatModel]:
    """The registered threat model called ``norm`` (``L∞`` and ``linf`` alike)."""
    try:
        return THREATS.get(norm.lower().replace("∞", "inf"))
    except UnknownNameError as err:
        raise ConfigError(f"norm: {err}") from None


def names(*threats: type[ThreatModel]) -> tuple[str, ...]:
    """``names(Linf, L2)`` → ``("linf", "l2")``: the threat models a plugin supports, spelt as settings name them."""
    return tuple(threat.name for threat in threats)


def threat_family(norm: str) -> str:
    """The leaderboard group of threat model ``norm``; a name no longer registered is its own group."""
    entry = find("threats", norm.lower().replace("∞", "inf"))
    return entry["family"] if entry else norm


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
    """The field's usual budget of threat model ``norm``: grey images 0.1 (L∞) / 1.5 (L2) / 10 (L1); colour 8/255 / 0.5 / 12; L0 one pixel."""
    return threat_class(norm).default_eps(channels)
