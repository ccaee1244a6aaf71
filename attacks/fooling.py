"""Fooling images: from noise to an image the model labels with near-certainty (white box or black box).

``method="gradient"`` climbs the sought class's log-probability (or logit) with the input gradient,
with the usual image priors (Gaussian blur every few steps, random jitter, decay toward grey);
``method="evolution"`` only reads the model's probabilities: a (1+λ) evolution strategy that
mutates a random block of pixels per child and keeps the best child when it raises the sought
class's probability. Both run all images (classes) in one batch and retire an image once it passes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks.patch import window_index
from robustkit.attack import Attack, Perturbed
from robustkit.errors import ConfigError
from robustkit.per_sample_random import SampleRandom
from robustkit.registry import ATTACKS
from robustkit.threats import names
from robustkit.threats.fooling import Fooling as FoolingImages
from robustkit.threats.fooling import confirm_fooling

_GRADIENT = {"step_size": 0.05, "objective": "logsoftmax", "blur": 0.0, "blur_every": 4, "jitter": 0, "decay": 0.0}
_EVOLUTION = {"population": 16, "block": 6, "sigma": 0.3}
_STEPS = {"gradient": 100, "evolution": 300}


@ATTACKS.register
@dataclass(frozen=True, kw_only=True)
class Fooling(Attack):
    """Fooling images (Nguyen, Yosinski & Clune, CVPR 2015, arXiv:1412.1897).

    Threat model ``fooling``: no clean image; an image in [0, 1] counts for class c when a fresh
    float32 pass gives c as the argmax with softmax probability ≥ ``eps`` (default 0.99).
    The class sought per image is ``target``, or without it ``y`` (there is no true label to leave);
    ``x`` only gives the images' shape, dtype and device. ``evidence["target"]`` reports it;
    ``success`` is ``confirm_fooling``'s verdict; ``extras["seconds"]`` (float64 N) is each image's own
    share of the run's time (every step's time split evenly among the images it worked on; the shares
    add up to the run) and ``queries`` counts model passes per image.
    Arguments: ``eps`` (threshold); ``method`` (gradient | evolution); ``start`` (noise: uniform from
    the sample's own stream | blank: mid-grey); ``steps`` (iterations: 100 gradient steps / 300
    generations); ``early_stop`` (a passing image stops costing passes); gradient only: ``step_size``
    (0.05: RMS change per pixel per step), ``objective`` (logsoftmax | logit), ``blur`` (Gaussian σ in
    pixels, 0 = off) every ``blur_every`` (4) steps, ``jitter`` (roll by up to n pixels per step, 0 =
    off), ``decay`` (0: pull toward grey per step, an L2 prior); evolution only: ``population`` (16
    children per generation), ``block`` (6: side of the mutated square), ``sigma`` (0.3: Gaussian
    mutation); ``seed``; ``precision``. A setting of the other method is refused.
    Cost of the defaults: on Fashion-MNIST smallcnn (1 CPU thread, shared cores) the gradient method
    fools all 10 classes at p ≥ 0.99 in ~0.6 s (median 4 passes per class), i.e. ~60 s for 1000
    Fashion-MNIST images sought; evolution needs a median 905 passes per class, ~18 s for the 10
    classes (~30 min for 1000), at most 1 + 300 × 16 per image (benchmarks/fooling_speed.py).
    Example::

        from attacks import Fooling
        from robustkit.evaluation.fooling import evaluate_fooling
        report = evaluate_fooling(model, Fooling(), (1, 28, 28))   # one image per class
        report.fooling_rate, report.confidence                     # verified by a fresh pass
        result = Fooling(method="evolution")(model, blank, classes)   # images, success per class
    """

    name: ClassVar[str] = "fooling"
    norms: ClassVar[tuple[str, ...]] = names(FoolingImages)

    eps: float = 0.99
    norm: str = FoolingImages.name
    method: str = "gradient"
    start: str = "noise"
    steps: int | None = None
    early_stop: bool = True
    step_size: float | None = None
    objective: str | None = None
    blur: float | None = None
    blur_every: int | None = None
    jitter: int | None = None
    decay: float | None = None
    population: int | None = None
    block: int | None = None
    sigma: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in _STEPS or self.start not in ("noise", "blank"):
            raise ConfigError(
                f"fooling: method is gradient | evolution and start noise | blank, got {self.method!r}, {self.start!r}"
            )
        other = _EVOLUTION if self.method == "gradient" else _GRADIENT
        given = [k for k in other if getattr(self, k) is not None]
        if given:
            raise ConfigError(f"fooling: '{given[0]}' is a setting of the other method, not of method={self.method}")
        if self.iterations < 1 or self.setting("objective") not in ("logsoftmax", "logit"):
            raise ConfigError(
                f"fooling needs steps ≥ 1 and objective logsoftmax | logit, got {self.steps}, {self.objective}"
            )
        mine = _GRADIENT if self.method == "gradient" else _EVOLUTION
        if any(self.setting(k) <= 0 for k in ("step_size", "blur_every", "population", "block", "sigma") if k in mine):
            raise ConfigError("fooling: step_size, blur_every, population, block and sigma must be > 0")
        if any(self.setting(k) < 0 for k in ("blur", "jitter", "decay") if k in mine):
            raise ConfigError("fooling: blur, jitter and decay must be ≥ 0")

    @property
    def iterations(self) -> int:
        return self.steps if self.steps is not None else _STEPS[self.method]

    def setting(self, key: str):
        """A method setting as it runs: the given value, else the method's default."""
        value = getattr(self, key)
        return value if value is not None else {**_GRADIENT, **_EVOLUTION}[key]

    def verdict(self, model: nn.Module, x_adv: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        return confirm_fooling(model, x_adv, y if target is None else target, self.eps)[1]

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, *, target, rng) -> Perturbed:
        sought = y if target is None else target
        start = rng.rand(*x.shape[1:]) if self.start == "noise" else torch.full(x.shape, 0.5)
        run = self._gradient if self.method == "gradient" else self._evolution
        best, queries, seconds = run(model, start.to(x.device, x.dtype), sought, rng)
        return Perturbed(
            best.to(x.dtype), queries=queries, evidence={"target": sought.clone()}, extras={"seconds": seconds}
        )

    def _passes(self, model: nn.Module, images: Tensor, probs: Tensor, sought: Tensor) -> Tensor:
        """Per image: passes by this pass's probabilities; under reduced precision claims are re-checked in float32."""
        hit = (probs.argmax(1) == sought) & (probs.gather(1, sought[:, None]).squeeze(1) >= self.eps)
        if self.precision != "fp32" and hit.any():
            claimed = hit.nonzero().squeeze(1)
            hit[claimed] = confirm_fooling(model, images[claimed], sought[claimed], self.eps)[1]
        return hit

    def _gradient(self, model, image: Tensor, sought: Tensor, rng: SampleRandom):
        tracker = _Tracker(image)
        jitter, blur = self.setting("jitter"), self.setting("blur")
        for step in range(self.iterations + 1):
            active = tracker.active
            if len(active) == 0:
                break
            x, t = image[active].requires_grad_(True), sought[active]
            shifts = rng[active].randint(2 * jitter + 1, 2) - jitter if jitter else None
            with torch.enable_grad():
                logits = model(_roll(x, shifts) if jitter else x).float()
                score = logits.log_softmax(1) if self.setting("objective") == "logsoftmax" else logits
                (grad,) = torch.autograd.grad(score.gather(1, t[:, None]).sum(), x)
            probs = logits.detach().softmax(1) if not jitter else _log_probs(model, x.detach()).exp()
            tracker.update(
                active,
                x.detach(),
                probs,
                t,
                self._passes(model, x.detach(), probs, t),
                2 if jitter else 1,
                stop=self.early_stop,
            )
            if step == self.iterations:
                break
            rms = grad.float().flatten(1).square().mean(1).sqrt().clamp_min(1e-12).view(-1, 1, 1, 1)
            moved = x.detach() + self.setting("step_size") * grad / rms
            moved = 0.5 + (moved - 0.5) * (1 - self.setting("decay"))
            if blur and (step + 1) % self.setting("blur_every") == 0:
                moved = _blur(moved, blur)
            image[active] = moved.clamp(0, 1).to(image.dtype)
        return tracker.result()

    @torch.no_grad()
    def _evolution(self, model, image: Tensor, sought: Tensor, rng: SampleRandom):
        """(1+λ): each generation λ children per image, each the parent with one block of Gaussian noise added."""
        n, tracker = len(image), _Tracker(image)
        lam, side, sigma = self.setting("population"), self.setting("block"), self.setting("sigma")
        _, c, h, w = image.shape
        side = min(side, h, w)
        log_probs = _log_probs(model, image)  # one pass gives the start's verdict and its score
        probs = log_probs.exp()
        tracker.update(
            torch.arange(n, device=image.device),
            image,
            probs,
            sought,
            self._passes(model, image, probs, sought),
            1,
            stop=self.early_stop,
        )
        parent_score = log_probs.gather(1, sought[:, None]).squeeze(1)
        for _ in range(self.iterations):
            active = tracker.active
            if len(active) == 0:
                break
            r = rng[active]
            rows, cols = r.randint(h - side + 1, lam), r.randint(w - side + 1, lam)
            noise = sigma * r.randn(lam, c, side, side).to(image.device)
            children = image[active, None].repeat(1, lam, 1, 1, 1)  # a × λ × C × H × W
            children = _mutate(children, noise, rows, cols).clamp(0, 1)
            t = sought[active]
            flat = children.flatten(0, 1)
            log_probs = _log_probs(model, flat).view(len(active), lam, -1)
            scores = log_probs.gather(2, t[:, None, None].expand(-1, lam, 1)).squeeze(2)
            best_score, pick = scores.max(1)
            better = best_score > parent_score[active]
            chosen = active[better]
            image[chosen] = children[better, pick[better]].to(image.dtype)
            parent_score[chosen] = best_score[better]
            p = log_probs[torch.arange(len(active)), pick].exp()
            winners = children[torch.arange(len(active)), pick]
            tracker.update(active, winners, p, t, self._passes(model, winners, p, t), lam, stop=self.early_stop)
        return tracker.result()


class _Tracker:
    """Per image: the best image so far (a passing one over any other, then the higher probability),
    model passes spent, the time spent on it, and which images are still being worked on.

    An image's time is its own share of the batch's: each step's time (since the previous update) is
    split evenly among the images that step worked on, so the shares add up to the run's time and an
    image retired early stops accruing any.
    """

    def __init__(self, image: Tensor) -> None:
        n = len(image)
        self.best, self.score = image.clone(), torch.full((n,), -1.0, device=image.device)
        self.queries = torch.zeros(n, dtype=torch.long, device=image.device)
        self.seconds = torch.zeros(n, dtype=torch.float64)
        self.active, self.mark = torch.arange(n, device=image.device), time.perf_counter()

    def update(
        self, rows: Tensor, images: Tensor, probs: Tensor, sought: Tensor, hit: Tensor, cost: int, *, stop: bool
    ) -> None:
        now = time.perf_counter()
        self.seconds[rows.cpu()] += (now - self.mark) / len(rows)
        self.mark = now
        self.queries[rows] += cost
        score = probs.gather(1, sought[:, None]).squeeze(1).float() + 2 * hit.float()
        better = score > self.score[rows]
        self.best[rows[better]], self.score[rows[better]] = images[better].to(self.best.dtype), score[better]
        if stop:
            self.active = self.active[~torch.isin(self.active, rows[hit])]

    def result(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.best, self.queries, self.seconds


@torch.no_grad()
def _log_probs(model: nn.Module, x: Tensor) -> Tensor:
    return model(x).float().log_softmax(1)


def _roll(x: Tensor, shifts: Tensor) -> Tensor:
    """Each image rolled (with wrap-around) by its own (rows, cols) shift; differentiable in ``x``."""
    n, c, h, w = x.shape
    rows = (torch.arange(h, device=x.device) - shifts[:, :1]) % h
    cols = (torch.arange(w, device=x.device) - shifts[:, 1:]) % w
    index = (rows[:, :, None] * w + cols[:, None, :]).flatten(1)[:, None].expand(-1, c, -1)
    return x.flatten(2).gather(2, index).view_as(x)


def _blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of standard deviation ``sigma`` pixels (edges replicated)."""
    radius = max(1, math.ceil(2 * sigma))
    k = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    k = (-k.square() / (2 * sigma**2)).exp()
    k, c = k / k.sum(), x.shape[1]
    out = F.pad(x.float(), (radius,) * 4, mode="replicate")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return out.to(x.dtype)


def _mutate(children: Tensor, noise: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Children (A×λ×C×H×W) with ``noise`` (A×λ×C×s×s) added to the s×s block at (rows, cols) (A×λ)."""
    a, lam, c, h, w = children.shape
    index = window_index(rows.flatten(), cols.flatten(), noise.shape[-1], w)[:, None].expand(-1, c, -1)
    flat = children.flatten(0, 1).flatten(2)
    return flat.scatter_add(2, index, noise.flatten(0, 1).flatten(2).to(flat.dtype)).view_as(children)
