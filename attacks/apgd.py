"""APGD: Auto-PGD, PGD whose step size tunes itself (Croce & Hein, ICML 2020)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from robustkit.attack import LossGradientAttack, Perturbed
from robustkit.losses import confirmed_success
from robustkit.errors import ConfigError
from robustkit.registry import ATTACKS
from robustkit.threat import per_sample


def checkpoints(steps: int) -> list[int]:
    """Iterations at which APGD decides whether to halve the step: the first after 22 % of the budget,
    then periods shrinking by 3 % of the budget down to 6 %."""
    period, shrink, shortest = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    marks, at = [], period
    while at <= steps:
        marks.append(at)
        period = max(period - shrink, shortest)
        at += period
    return marks


@ATTACKS.register
@dataclass(frozen=True, kw_only=True)
class APGD(LossGradientAttack):
    """Auto-PGD: momentum steps whose size starts at 2ε and halves when progress stalls.

    At each checkpoint (``checkpoints``) a sample's step halves, and it restarts from its best point
    so far, when the loss rose in fewer than ``rho`` of the period's steps, or when neither the step
    nor the best loss changed since the last checkpoint. No step size to tune: this is what makes it
    a reliable default (AutoAttack's first two attacks).

    Threat model: L∞ or L2 ball of radius ``eps``, within [0, 1].
    Arguments: ``eps``; ``steps`` (100); ``restarts`` (1; each from a new random point, run on the
    samples still unbroken); ``loss`` (ce | dlr | margin); ``targets`` (0: untargeted; k > 0: APGD-T,
    one run per class among the k highest-scoring wrong ones, with the targeted ``loss`` pulling
    toward it, success still meaning misclassification; the paper uses k = 9 with ``loss="dlr"``);
    ``rho`` (0.75); ``momentum`` (0.75); ``seed``; ``precision``.
    Shapes: x N×C×H×W in [0, 1], y (and target) int64 N; ``queries`` counts passes per sample.
    A sample stops costing passes once it is fooled, or once its gradient is exactly zero where it
    stands, since it would never move again (its own trajectory is unchanged by the others').
    Cost of the defaults: 100 steps = at most 100 forward+backward passes per image; ~5 s for 1000
    Fashion-MNIST images on smallcnn on 2 CPU cores (L∞ ε = 0.1: most images fall in a few steps).

    Example::

        from attacks import APGD
        ce = APGD(eps=8/255)(model, x, y)
        t = APGD(eps=8/255, loss="dlr", targets=9)(model, x, y)
    """

    name: ClassVar[str] = "apgd"

    steps: int = 100
    restarts: int = 1
    targets: int = 0
    rho: float = 0.75
    momentum: float = 0.75

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 1 or self.restarts < 1 or self.targets < 0:
            raise ConfigError(f"APGD needs steps ≥ 1, restarts ≥ 1 and targets ≥ 0 (got {self})")
        if not (0 < self.rho <= 1 and 0 <= self.momentum < 1):
            raise ConfigError(f"APGD needs 0 < rho ≤ 1 and 0 ≤ momentum < 1 (got rho={self.rho}, momentum={self.momentum})")

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, *, target, rng) -> Perturbed:
        runs = [(target, target)]  # (class the loss pulls toward, class that counts as success)
        if target is None and self.targets:
            with torch.no_grad():
                logits = model(x).float()
            if logits.shape[1] < 4 and self.loss == "dlr":
                raise ConfigError("targeted DLR needs at least 4 classes; use loss='ce' or 'margin' with targets")
            ranked = logits.scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)  # wrong classes first
            runs = [(ranked[:, k], None) for k in range(min(self.targets, logits.shape[1] - 1))]
        best, best_loss = x.clone(), torch.full((len(x),), float("-inf"), device=x.device)
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        queries = torch.zeros(len(x), dtype=torch.long, device=x.device)
        for pull, goal in runs:
            for _ in range(self.restarts):
                todo = (~done).nonzero().squeeze(1)
                if len(todo) == 0:
                    return Perturbed(best, queries=queries)
                pick = (lambda t: None if t is None else t[todo])  # noqa: E731
                adv, loss, fooled, spent = self._run(model, x[todo], y[todo], pick(pull), pick(goal), rng[todo])
                queries[todo] += spent
                better = fooled | (loss > best_loss[todo])
                best[todo[better]], best_loss[todo[better]] = adv[better], loss[better]
                done[todo[fooled]] = True
        return Perturbed(best, queries=queries)

    def _run(self, model, x, y, pull, goal, rng):
        """One APGD run. Returns the adversarial (or highest-loss) points, their loss (+inf if fooled),
        the fooled mask and the passes spent, per sample."""
        threat, n, device = self.threat, len(x), x.device
        out, out_loss = x.clone(), torch.full((n,), float("-inf"), device=device)
        fooled = torch.zeros(n, dtype=torch.bool, device=device)
        queries = torch.zeros(n, dtype=torch.long, device=device)
        # per-sample state of the working set (the samples not fooled yet)
        idx, x0, ya = torch.arange(n, device=device), x, y
        ta, ga = pull, goal
        xa = threat.random_point(x, rng)
        loss, grad, logits = self.loss_and_grad(model, xa, ya, ta)
        queries += self.eot
        step = torch.full((n,), 2.0 * self.eps, device=device)
        x_prev, x_best, grad_best, loss_best = xa, xa, grad, loss
        rises = torch.zeros(n, device=device)
        best_at_mark, reduced_at_mark = loss_best.clone(), torch.ones(n, dtype=torch.bool, device=device)
        marks, last_mark = set(checkpoints(self.steps)), 0
        for i in range(self.steps + 1):
            hit = confirmed_success(model, xa, logits, ya, ga, self.precision)
            # a zero gradient with no momentum left, at the best point (where a restart would return), is
            # a fixed point: every later step lands on it again (masked gradients do this), so stop there
            still = (xa == x_prev).flatten(1).all(1) & (xa == x_best).flatten(1).all(1)
            stuck = ~hit & still & (grad.flatten(1) == 0).all(1) & (grad_best.flatten(1) == 0).all(1)
            leave = hit | stuck
            if leave.any():  # retire fooled and stuck samples (one host sync): their work is done
                out[idx[hit]], fooled[idx[hit]] = xa[hit], True
                out[idx[stuck]], out_loss[idx[stuck]] = x_best[stuck], loss_best[stuck]
                keep = ~leave
                idx, x0, ya, xa, x_prev, grad = idx[keep], x0[keep], ya[keep], xa[keep], x_prev[keep], grad[keep]
                x_best, grad_best, loss_best, loss = x_best[keep], grad_best[keep], loss_best[keep], loss[keep]
                step, rises, best_at_mark, reduced_at_mark = step[keep], rises[keep], best_at_mark[keep], reduced_at_mark[keep]
                ta, ga = (None if ta is None else ta[keep]), (None if ga is None else ga[keep])
                if len(idx) == 0:
                    break
            if i == self.steps:
                break
            if i in marks:
                stalled = rises < self.rho * (i - last_mark)
                stuck = ~reduced_at_mark & (loss_best <= best_at_mark)
                halve = stalled | stuck
                step = torch.where(halve, step / 2, step)
                xa = torch.where(_rows(halve, xa), x_best, xa)
                grad = torch.where(_rows(halve, grad), grad_best, grad)
                rises.zero_()
                best_at_mark, reduced_at_mark, last_mark = loss_best.clone(), halve, i
            size = _rows(step, xa)
            z = threat.step(x0, xa, grad, size)
            a = 1.0 if i == 0 else self.momentum
            x_next = threat.clip(x0, xa + a * (z - xa) + (1 - a) * (xa - x_prev))
            x_prev, xa = xa, x_next.detach()
            new_loss, grad, logits = self.loss_and_grad(model, xa, ya, ta)
            queries[idx] += self.eot
            rises += (new_loss > loss).float()
            loss = new_loss
            up = loss > loss_best
            x_best = torch.where(_rows(up, xa), xa, x_best)
            grad_best = torch.where(_rows(up, grad), grad, grad_best)
            loss_best = torch.where(up, loss, loss_best)
        out[idx], out_loss[idx] = x_best, loss_best
        out_loss[fooled] = float("inf")
        return out, out_loss, fooled, queries


def _rows(values: Tensor, like: Tensor) -> Tensor:
    """A per-sample vector shaped to broadcast over images (boolean masks stay boolean)."""
    return values.view(-1, *([1] * (like.ndim - 1))) if values.dtype == torch.bool else per_sample(values, like)
