"""The empirical side of a smoothed classifier: SmoothAdv's PGD (Salman et al., NeurIPS 2019) at L2.

Each step maximises the cross-entropy of the *smoothed soft classifier*, log of the mean softmax of the
base model over m noise draws (their Eq. 7, the EOT form), and steps by the L2 threat model's own rule
(projection onto the ball and [0, 1]). The example found is judged by the smoothed classifier itself
(PREDICT on fresh noise), so certified and empirical figures are about the same g:

- ``robust`` (the figure shown, Salman et al.'s convention): PREDICT on the example says the label;
  an abstention counts as an error.
- ``broken``: PREDICT confidently says another class (a verified adversarial example of g). An image
  certified at radius ≥ r and broken inside r contradicts the certificate (up to the two α's): a bug signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustkit.certification.smoothing import (
    ABSTAIN,
    Phase,
    Smoothing,
    Tick,
    noise,
    predict,
)
from robustkit.errors import ConfigError
from robustkit.modes import eval_mode
from robustkit.results.intervals import Interval, proportion_interval
from robustkit.threats import L2


@dataclass(frozen=True, kw_only=True)
class SmoothAdv:
    """PGD with ``m`` noise draws per step on the smoothed soft classifier; ``step_size`` [2·ε/steps].

    ``predict_n`` draws judge each example (PREDICT at the smoothing's α): fewer than CERTIFY's n, since
    every radius needs its own; more draws abstain less.
    """

    steps: int = 10
    m: int = 8
    step_size: float | None = None
    predict_n: int = 1000

    def __post_init__(self) -> None:
        for name in ("steps", "m", "predict_n"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"smoothadv: {name} must be a whole number ≥ 1, got {value!r}")

    def settings(self) -> dict[str, float | int | None]:
        return {"steps": self.steps, "m": self.m, "step_size": self.step_size, "predict_n": self.predict_n}

    def perturb(
        self, model: nn.Module, x: Tensor, y: Tensor, index: Tensor, eps: float, smoothing: Smoothing, *, seed: int = 0
    ) -> Tensor:
        """Adversarial examples inside the L2 ball of radius ``eps`` and [0, 1]; ``x`` and the model untouched."""
        threat = L2(eps)
        alpha = self.step_size if self.step_size is not None else 2 * eps / self.steps
        x_adv = x.detach().clone()
        with eval_mode(model):
            for step in range(self.steps):
                draws = torch.stack(
                    [
                        noise(
                            x[i],
                            int(index[i]),
                            sigma=smoothing.sigma,
                            seed=seed,
                            phase=Phase.ATTACK,
                            start=step * self.m,
                            count=self.m,
                        )
                        for i in range(len(x))
                    ]
                )
                with torch.enable_grad():
                    point = x_adv.detach().requires_grad_(True)
                    logits = model((point[:, None] + draws).flatten(0, 1)).float()
                    soft = F.softmax(logits, dim=1).view(len(x), self.m, -1).mean(1)
                    loss = F.nll_loss(soft.clamp_min(1e-20).log(), y)
                    (grad,) = torch.autograd.grad(loss, point)
                x_adv = threat.step(x, x_adv, grad, alpha)
        return x_adv.detach()

    def evaluate(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        index: Tensor,
        eps: float,
        smoothing: Smoothing,
        *,
        seed: int = 0,
        tick: Tick | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Per image (robust, broken) at radius ``eps``: see the module's docstring. Every example is checked
        to lie in the ball and in [0, 1] before it counts."""
        x_adv = self.perturb(model, x, y, index, eps, smoothing, seed=seed)
        inside = L2(eps).contains(x, x_adv) & (x_adv >= 0).flatten(1).all(1) & (x_adv <= 1).flatten(1).all(1)
        judge = Smoothing(**{**smoothing.settings(), "n": self.predict_n, "batch_size": smoothing.batch_size})
        said = predict(model, x_adv, index, judge, seed=seed, tick=tick).to(y.device)
        robust = (said == y) | ~inside
        broken = (said != y) & (said != ABSTAIN) & inside
        return robust.cpu(), broken.cpu()


def attack_radii(radii: list[float], max_radius: float) -> list[float]:
    """The radii the attack runs at: those shown, but 0 (nothing to attack) and none past what can be certified."""
    return [r for r in radii if 0 < r <= max_radius + 1e-12 and math.isfinite(r)]


@dataclass(frozen=True)
class EmpiricalPoint:
    """SmoothAdv at one radius on n images: how many PREDICT still called right, how many it left unbroken."""

    radius: float
    robust: int  # PREDICT on the example says the label (abstaining counts as an error)
    unbroken: int  # no confident wrong verdict: the most a sound certificate can count
    n: int
    contradicted: int  # certified for their label at ≥ this radius, yet broken inside it

    @property
    def accuracy(self) -> float:
        return self.robust / self.n

    @property
    def interval(self) -> Interval:
        return proportion_interval(self.robust, self.n)

    @property
    def unbroken_interval(self) -> Interval:
        return proportion_interval(self.unbroken, self.n)


def soundness_flags(curve: list[tuple[float, float, Interval]], empirical: list[EmpiricalPoint]) -> list[str]:
    """Radii where certified accuracy lies above the share of images the attack left unbroken by more than
    both 95 % intervals allow: no certificate holds for an image with a verified adversarial example inside
    its radius, so this is a bug signal (in the certification, the attack's verdict, or the model's noise)."""
    certified = {r: (a, i) for r, a, i in curve}
    flags = [
        f"radius {p.radius:g}: {p.contradicted} image(s) certified at ≥ {p.radius:g} for their label, yet "
        "SmoothAdv found an example inside that PREDICT confidently calls another class"
        for p in empirical
        if p.contradicted
    ]
    for point in empirical:
        if point.radius not in certified:
            continue
        accuracy, interval = certified[point.radius]
        ceiling = point.unbroken_interval
        if interval.low is not None and ceiling.high is not None and interval.low > ceiling.high:
            flags.append(
                f"radius {point.radius:g}: certified accuracy {accuracy:.4f} {interval.text()} is above the "
                f"{point.unbroken}/{point.n} images SmoothAdv left unbroken {ceiling.text()}"
            )
    return flags
