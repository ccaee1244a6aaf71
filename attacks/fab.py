"""FAB: the Fast Adaptive Boundary attack (Croce & Hein, ICML 2020, arXiv:1907.02044)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from attacks.runs_at_once import first_success, settled_earlier, stacked
from robustkit.attack import GradientAttack, Perturbed
from robustkit.errors import ConfigError
from robustkit.losses import confirmed_success
from robustkit.per_sample_random import SampleRandom
from robustkit.registry import ATTACKS
from robustkit.threats import L1, L2, Linf, clip_to_box, names, per_sample
from robustkit.threats.hyperplane import dual_norm, project


@ATTACKS.register
@dataclass(frozen=True, kw_only=True)
class FAB(GradientAttack):
    """FAB: walk to the nearest linearised decision boundary, pulled back toward the clean image.

    Each step linearises the boundary between the label and the nearest other class (|logit gap| /
    ‖gradient gap‖_*) into a hyperplane, projects both the iterate and the clean image onto it inside
    the box, and moves to a mix of the two projections (weight α ≤ ``alpha_max`` on the clean one,
    overshooting by ``eta``). Once an iterate is adversarial it is kept if it is the smallest yet and
    pulled ``beta`` of the way back to the clean image, so the search closes in on the boundary.

    Threat model: L∞, L2 or L1 ball of radius ``eps``, within [0, 1] (L1: the hyperplane projection moves
    whole coordinates in order of |w|, as in the official FAB-L1).
    Arguments: ``eps``, ``norm``; ``steps`` (100); ``restarts`` (1; the first run starts at x, the others
    at random points ε/2 away); ``targets`` (0: untargeted, every class's boundary considered, one
    backward pass per class per step; k > 0: FAB-T, one run per class among the k highest-scoring
    wrong ones at x, one backward pass per step, success still meaning misclassification);
    ``alpha_max`` (0.1), ``eta`` (1.05), ``beta`` (0.9): the paper's and AutoAttack's; ``minimize``
    (False: bounded, as in AutoAttack, a sample counts only if an example within ``eps`` is found, and
    the search on it stops there; True: the minimum-norm mode, every step run and the smallest example
    found returned whatever its norm, so the engine reports each sample's minimal adversarial norm and
    one run gives the whole ε-curve); ``seed``; ``precision``; ``eot`` and ``bpda``.
    FAB-T's targets (one restart, bounded) search together as one batch, each sample keeping the first
    target's example within ε as they would in turn (``attacks.runs_at_once``).
    Shapes: x N×C×H×W in [0, 1], y (and target) int64 N; ``queries`` counts passes per sample.
    Cost of the defaults: 100 steps × (1 forward + K backward untargeted, or 1 backward targeted, and 1
    forward to check); bounded, a sample stops once broken within ε: ~30 s for 1000 Fashion-MNIST images
    on smallcnn on 2 CPU cores (L∞ ε = 0.1, robust accuracy 0.039).

    Example::

        from attacks import FAB
        result = FAB(eps=0.1, targets=9)(model, x, y)                 # FAB-T, AutoAttack's member
        smallest = FAB(eps=1.5, norm="l2", minimize=True)(model, x, y).norms
    """

    name: ClassVar[str] = "fab"
    norms: ClassVar[tuple[str, ...]] = names(Linf, L2, L1)

    steps: int = 100
    restarts: int = 1
    targets: int = 0
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9
    minimize: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 1 or self.restarts < 1 or self.targets < 0:
            raise ConfigError(
                f"FAB needs steps ≥ 1, restarts ≥ 1 and targets ≥ 0 (got {self.steps}, {self.restarts}, {self.targets})"
            )
        if not (0 <= self.alpha_max <= 1 and self.eta >= 1 and 0 < self.beta <= 1):
            raise ConfigError(
                f"FAB needs 0 ≤ alpha_max ≤ 1, eta ≥ 1 and 0 < beta ≤ 1 (got {self.alpha_max}, {self.eta}, {self.beta})"
            )

    @property
    def minimum_norm(self) -> bool:
        return self.minimize

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, *, target, rng: SampleRandom) -> Perturbed:
        runs = [(target, target)]  # (class whose boundary is sought, class that counts as success)
        if target is None and self.targets:
            with torch.no_grad():
                logits = self.mean_logits(model, x).float()
            ranked = logits.scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)  # wrong classes first
            runs = [(ranked[:, k], None) for k in range(min(self.targets, logits.shape[1] - 1))]
        if len(runs) > 1 and self.restarts == 1 and not self.minimize:
            return self._all_targets_at_once(model, x, y, [pull for pull, _ in runs])
        best = x.clone()
        best_norm = torch.full((len(x),), float("inf"), device=x.device)
        queries = torch.zeros(len(x), dtype=torch.long, device=x.device)
        for pull, goal in runs:
            for restart in range(self.restarts):
                todo = (
                    (best_norm > self.eps).nonzero().squeeze(1)
                    if not self.minimize
                    else torch.arange(len(x), device=x.device)
                )
                if len(todo) == 0:
                    return Perturbed(best, queries=queries)
                pick = lambda t, todo=todo: None if t is None else t[todo]  # noqa: E731
                start = x[todo] if restart == 0 else self._random_start(x[todo], rng[todo])
                adv, norm, spent = self._search(model, x[todo], y[todo], pick(pull), pick(goal), start)
                queries[todo] += spent
                better = norm < best_norm[todo]
                best[todo[better]], best_norm[todo[better]] = adv[better], norm[better]
        if not self.minimize:  # bounded: an example beyond ε does not count, so none is returned
            best = torch.where((best_norm <= self.eps).view(-1, *[1] * (x.ndim - 1)), best, x)
        return Perturbed(best, queries=queries)

    def _all_targets_at_once(self, model: nn.Module, x: Tensor, y: Tensor, pulls: list[Tensor]) -> Perturbed:
        """FAB-T's runs, one per target, as one batch (``attacks.runs_at_once``): one pass per step over
        targets × N rows, not one per target over the few samples left. The outcome is the targets' in
        turn: a sample keeps the example of the first target that found one within ε, else x."""
        n, k = len(x), len(pulls)
        adv, norm, spent = self._search(
            model, stacked(x, k), stacked(y, k), torch.cat(pulls), None, stacked(x, k), samples=n
        )
        best, found = first_success((norm <= self.eps).view(k, n), adv)
        return Perturbed(torch.where(found.view(-1, *[1] * (x.ndim - 1)), best, x), queries=spent.view(k, n).sum(0))

    def _random_start(self, x: Tensor, rng: SampleRandom) -> Tensor:
        """A random point at distance ε/2 in the attack's norm (AutoAttack's FAB restarts), inside [0, 1]."""
        t = 2 * rng.rand(*x.shape[1:]) - 1 if self.norm == Linf.name else rng.randn(*x.shape[1:])
        t = t / per_sample(self.threat.norm(t).clamp_min(1e-12), t)
        return clip_to_box(x + 0.5 * self.eps * t.to(x.dtype))

    def _search(self, model, x, y, pull, goal, start, samples=None) -> tuple[Tensor, Tensor, Tensor]:
        """One FAB run. Returns per sample the smallest adversarial point found (x where none), its norm
        (inf where none) and the passes spent. Bounded, a sample leaves once it has one within ε. With
        ``samples`` the rows are runs over that many samples, run-major (``_all_targets_at_once``): a row
        also leaves once an earlier run on its sample has found one within ε."""
        n, shape = len(x), x.shape
        best, best_norm = x.clone(), torch.full((n,), float("inf"), device=x.device)
        queries = torch.zeros(n, dtype=torch.long, device=x.device)
        idx, x0, ya, point = torch.arange(n, device=x.device), x.flatten(1).float(), y, start.flatten(1).float()
        first_found = None if samples is None else torch.full((samples,), n // samples, device=x.device)  # per sample
        for _ in range(self.steps):
            gap, w = self._boundary(
                model, point.view(-1, *shape[1:]).to(x.dtype), ya, None if pull is None else pull[idx]
            )
            b = (w * point).sum(1) - gap  # the hyperplane w·z = b where the linearised logit gap is 0
            to_point, to_clean = project(point, w, b, self.norm), project(x0, w, b, self.norm)
            near, far = self.threat.norm(to_point).clamp_min(1e-8), self.threat.norm(to_clean).clamp_min(1e-8)
            alpha = (near / (near + far)).clamp(0, self.alpha_max)[:, None]
            point = clip_to_box((point + self.eta * to_point) * (1 - alpha) + (x0 + self.eta * to_clean) * alpha)
            candidate = point.view(-1, *shape[1:]).to(x.dtype)
            with torch.no_grad():
                logits = self.mean_logits(model, candidate)
            queries[idx] += 2 * self.eot
            hit = confirmed_success(model, candidate, logits, ya, None if goal is None else goal[idx], self.precision)
            size = self.threat.norm(candidate.float() - x0.view(-1, *shape[1:]))
            better = hit & (size < best_norm[idx])
            best[idx[better]], best_norm[idx[better]] = candidate[better], size[better]
            point = torch.where(hit[:, None], x0 + self.beta * (point - x0), point)  # back toward the clean image
            keep = best_norm[idx] > self.eps if not self.minimize else torch.ones_like(hit)
            if first_found is not None:
                keep &= ~settled_earlier(first_found, idx, ~keep)
            if not keep.all():
                idx, x0, ya, point = idx[keep], x0[keep], ya[keep], point[keep]
                if len(idx) == 0:
                    break
        return best, best_norm, queries

    def _boundary(self, model: nn.Module, x: Tensor, y: Tensor, pull: Tensor | None) -> tuple[Tensor, Tensor]:
        """The nearest boundary's logit gap f (N, < 0 while unbroken) and its input gradient w (N×D), from
        the label's logit toward ``pull`` or, untargeted, toward the class with the least |f| / ‖w‖_*."""
        with self.differentiable():
            point = x.detach().requires_grad_(True)
            logits = self.mean_logits(model, point).float()
            rows = torch.arange(len(x), device=x.device)
            classes = [pull] if pull is not None else [torch.full_like(y, k) for k in range(logits.shape[1])]
            best_dist = torch.full((len(x),), float("inf"), device=x.device)
            gap, w = torch.zeros(len(x), device=x.device), torch.zeros(x[0].numel(), device=x.device).repeat(len(x), 1)
            for number, k in enumerate(classes):
                pick = torch.zeros_like(logits)
                pick[rows, k] += 1
                pick[rows, y] -= 1  # the label's own row is all zero: its gap is never the nearest
                (grad,) = torch.autograd.grad(
                    logits, point, pick, retain_graph=number + 1 < len(classes), allow_unused=True
                )
                grad = torch.zeros_like(point) if grad is None else grad
                grad = grad.flatten(1).float()
                f = (logits.detach() * pick).sum(1)
                dist = f.abs() / (dual_norm(grad, self.norm) + 1e-12)
                dist = torch.where(k == y, torch.full_like(dist, float("inf")), dist)
                closer = dist < best_dist if pull is None else torch.ones_like(dist, dtype=torch.bool)
                best_dist = torch.where(closer, dist, best_dist)
                gap, w = torch.where(closer, f, gap), torch.where(closer[:, None], grad, w)
        return gap, w
