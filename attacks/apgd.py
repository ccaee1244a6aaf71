"""APGD: Auto-PGD, PGD whose step size tunes itself (Croce & Hein, ICML 2020); APGD-L1 (ICML 2021)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor, nn

from attacks.runs_at_once import first_success, settled_earlier, stacked
from robustkit.attack import LossGradientAttack, Perturbed
from robustkit.errors import ConfigError
from robustkit.losses import confirmed_success
from robustkit.registry import ATTACKS
from robustkit.threats import L1, L2, Linf, names, per_sample


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

    Under L1 it is APGD-L1 (Croce & Hein, "Mind the box", ICML 2021): no momentum; each step moves the
    top share of coordinates by gradient magnitude (``L1.sparse_direction``), a share that follows the
    sparsity of the best point so far; steps start at ε and shrink by 1.5 (or reset) every 4 % of the
    budget; every iterate is projected exactly onto the L1 ball ∩ [0, 1]; and by default the run starts
    in the 3ε and 2ε balls (``large_eps_first``, as AutoAttack runs it).

    Threat model: L∞, L2 or L1 ball of radius ``eps``, within [0, 1].
    Arguments: ``eps``; ``steps`` (100); ``restarts`` (1; each from a new random point, run on the
    samples still unbroken); ``loss`` (ce | dlr | margin); ``targets`` (0: untargeted; k > 0: APGD-T,
    one run per class among the k highest-scoring wrong ones, with the targeted ``loss`` pulling
    toward it, success still meaning misclassification; the paper uses k = 9 with ``loss="dlr"``);
    ``rho`` (0.75); ``momentum`` (0.75); ``large_eps_first`` (L1 only: the 3ε → 2ε → ε schedule,
    30/30/40 % of the steps [on]; AutoAttack's L1 version also uses 5 restarts); ``seed``; ``precision``.
    Shapes: x N×C×H×W in [0, 1], y (and target) int64 N; ``queries`` counts passes per sample.
    A sample stops costing passes once it is fooled, or once its gradient is exactly zero where it
    stands, since it would never move again (its own trajectory is unchanged by the others').
    Several runs (targets × restarts; L∞, L2) step together as one batch, each sample deciding as the runs
    in turn would (``attacks.runs_at_once``): on the few samples left after APGD-CE, one pass per step
    instead of one per target is what makes APGD-T cheap.
    Cost of the defaults: 100 steps = at most 100 forward+backward passes per image; ~5 s for 1000
    Fashion-MNIST images on smallcnn on 2 CPU cores (L∞ ε = 0.1: most images fall in a few steps).

    Example::

        from attacks import APGD
        ce = APGD(eps=8/255)(model, x, y)
        t = APGD(eps=8/255, loss="dlr", targets=9)(model, x, y)
        sparse = APGD(eps=12, norm="l1", restarts=5)(model, x, y)
    """

    name: ClassVar[str] = "apgd"
    norms: ClassVar[tuple[str, ...]] = names(Linf, L2, L1)

    steps: int = 100
    restarts: int = 1
    targets: int = 0
    rho: float = 0.75
    momentum: float = 0.75
    large_eps_first: bool | None = None  # L1 only: the 3ε → 2ε → ε schedule [on under L1, as in AutoAttack]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 1 or self.restarts < 1 or self.targets < 0:
            raise ConfigError(f"APGD needs steps ≥ 1, restarts ≥ 1 and targets ≥ 0 (got {self})")
        if not (0 < self.rho <= 1 and 0 <= self.momentum < 1):
            raise ConfigError(
                f"APGD needs 0 < rho ≤ 1 and 0 ≤ momentum < 1 (got rho={self.rho}, momentum={self.momentum})"
            )
        if self.large_eps_first and not isinstance(self.threat, L1):
            raise ConfigError(f"APGD's large_eps_first schedule is for the l1 threat model, not {self.norm}")
        if self._large_eps_first and self.steps < 3:
            raise ConfigError(
                f"APGD-L1's 3ε → 2ε → ε schedule needs steps ≥ 3 (got {self.steps}); or -o large_eps_first=false"
            )

    @property
    def _large_eps_first(self) -> bool:
        return isinstance(self.threat, L1) and self.large_eps_first is not False

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, *, target, rng) -> Perturbed:
        runs = [(target, target)]  # (class the loss pulls toward, class that counts as success)
        if target is None and self.targets:
            with torch.no_grad():
                logits = model(x).float()
            if logits.shape[1] < 4 and self.loss == "dlr":
                raise ConfigError("targeted DLR needs at least 4 classes; use loss='ce' or 'margin' with targets")
            ranked = logits.scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)  # wrong classes first
            runs = [(ranked[:, k], None) for k in range(min(self.targets, logits.shape[1] - 1))]
        if len(runs) * self.restarts > 1 and not isinstance(self.threat, L1):
            return self._all_runs_at_once(model, x, y, runs, rng)
        best, best_loss = x.clone(), torch.full((len(x),), float("-inf"), device=x.device)
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        queries = torch.zeros(len(x), dtype=torch.long, device=x.device)
        for pull, goal in runs:
            for _ in range(self.restarts):
                todo = (~done).nonzero().squeeze(1)
                if len(todo) == 0:
                    return Perturbed(best, queries=queries)
                pick = lambda t, todo=todo: None if t is None else t[todo]  # noqa: E731
                adv, loss, fooled, spent = self._run(model, x[todo], y[todo], pick(pull), pick(goal), rng[todo])
                queries[todo] += spent
                better = fooled | (loss > best_loss[todo])
                best[todo[better]], best_loss[todo[better]] = adv[better], loss[better]
                done[todo[fooled]] = True
        return Perturbed(best, queries=queries)

    def _all_runs_at_once(self, model, x, y, runs, rng) -> Perturbed:
        """Every run (target × restart) on every sample as one batch (``attacks.runs_at_once``): one pass per
        step over runs × N rows, not one per run over the few samples left. The outcome is the runs' in
        turn: run r starts from the sample's r-th draw, a sample is broken iff some run fools it and keeps
        the first such run's example; an unbroken one keeps the first highest-loss point."""
        plan = [run for run in runs for _ in range(self.restarts)]
        n, k = len(x), len(plan)
        starts = torch.cat([self.threat.random_point(x, rng) for _ in plan])  # draw r: run r's, as in turn
        pull, goal = (None if plan[0][j] is None else torch.cat([run[j] for run in plan]) for j in (0, 1))
        adv, loss, fooled, spent = self._descend(
            model, stacked(x, k), stacked(y, k), pull, goal, None, self.threat, self.steps, starts, samples=n
        )
        best, broken = first_success(fooled.view(k, n), adv)
        loss = loss.view(k, n).nan_to_num(nan=float("-inf"))
        highest, _ = first_success(loss == loss.amax(0), adv)  # a tie keeps the earlier run's point, as in turn
        moved = loss.amax(0) > float("-inf")
        best = torch.where(_rows(broken, x), best, torch.where(_rows(moved, x), highest, x))
        return Perturbed(best, queries=spent.view(k, n).sum(0))

    def _run(self, model, x, y, pull, goal, rng):
        """One APGD run. Returns the adversarial (or highest-loss) points, their loss (+inf if fooled),
        the fooled mask and the passes spent, per sample.

        Under L1 with ``large_eps_first`` the run is AutoAttack's schedule: 30 % of the steps in the
        3ε ball, 30 % in 2ε, 40 % in ε, each stage starting from the previous one's highest-loss point;
        only the last stage's successes count (the others lie outside the ε-ball).
        """
        if not self._large_eps_first:
            return self._descend(model, x, y, pull, goal, rng, self.threat, self.steps)
        first = math.ceil(0.3 * self.steps)
        stages = [(3.0, first), (2.0, first), (1.0, self.steps - 2 * first)]
        start = replace(self.threat, eps=3.0 * self.eps).clip(x, x + rng.randn(*x.shape[1:]).to(x.dtype))
        queries = torch.zeros(len(x), dtype=torch.long, device=x.device)
        for factor, steps in stages:
            threat = replace(self.threat, eps=factor * self.eps)
            start, loss, fooled, spent = self._descend(
                model, x, y, pull, goal, rng, threat, steps, start, final=factor == 1
            )
            queries += spent
        return start, loss, fooled, queries

    def _descend(self, model, x, y, pull, goal, rng, threat, steps, start=None, final=True, samples=None):
        """``steps`` APGD iterations in ``threat`` from ``start`` (default: a random point). Only a ``final``
        descent retires fooled samples: the earlier stages of the L1 schedule work in larger balls. With
        ``samples`` the rows are runs over that many samples, run-major (``_all_runs_at_once``): a row also
        retires once an earlier run on its sample is fooled, since that run's example is the one kept."""
        n, device, sparse = len(x), x.device, isinstance(threat, L1)
        out, out_loss = x.clone(), torch.full((n,), float("-inf"), device=device)
        fooled = torch.zeros(n, dtype=torch.bool, device=device)
        queries = torch.zeros(n, dtype=torch.long, device=device)
        # per-sample state of the working set (the samples not fooled yet)
        idx, x0, ya = torch.arange(n, device=device), x, y
        ta, ga = pull, goal
        if start is not None:
            xa = threat.clip(x, start)
        elif sparse:  # the official APGD-L1 start: a Gaussian draw projected onto the ball ∩ box (sparse, on its face)
            xa = threat.clip(x, x + rng.randn(*x.shape[1:]).to(x.dtype))
        else:
            xa = threat.random_point(x, rng)
        loss, grad, logits = self.loss_and_grad(model, xa, ya, ta)
        queries += self.eot
        state = (
            self._sparse_state(x, xa, threat.eps, given=start is not None)
            if sparse
            else {
                "step": torch.full((n,), 2.0 * threat.eps, device=device),
                "rises": torch.zeros(n, device=device),
                "best_at_mark": loss.clone(),
                "reduced_at_mark": torch.ones(n, dtype=torch.bool, device=device),
            }
        )
        x_prev, x_best, grad_best, loss_best = xa, xa, grad, loss
        marks, last_mark = set(sparse_checkpoints(steps) if sparse else checkpoints(steps)), 0
        first_fooled = None if samples is None else torch.full((samples,), n // samples, device=device)  # per sample
        for i in range(steps + 1):
            if final:
                hit = confirmed_success(model, xa, logits, ya, ga, self.precision)
            else:
                hit = torch.zeros(len(idx), dtype=torch.bool, device=device)
            # a zero gradient with no momentum left, at the best point (where a restart would return), is
            # a fixed point: every later step lands on it again (masked gradients do this), so stop there
            still = (xa == x_prev).flatten(1).all(1) & (xa == x_best).flatten(1).all(1)
            stuck = ~hit & still & (grad.flatten(1) == 0).all(1) & (grad_best.flatten(1) == 0).all(1)
            leave = hit | stuck
            if first_fooled is not None:
                leave |= settled_earlier(first_fooled, idx, hit)
            if leave.any():  # retire fooled and stuck samples (one host sync): their work is done
                out[idx[hit]], fooled[idx[hit]] = xa[hit], True
                out[idx[stuck]], out_loss[idx[stuck]] = x_best[stuck], loss_best[stuck]
                keep = ~leave
                idx, x0, ya, xa, x_prev, grad = idx[keep], x0[keep], ya[keep], xa[keep], x_prev[keep], grad[keep]
                x_best, grad_best, loss_best, loss = x_best[keep], grad_best[keep], loss_best[keep], loss[keep]
                state = {k: v[keep] for k, v in state.items()}
                ta, ga = (None if ta is None else ta[keep]), (None if ga is None else ga[keep])
                if len(idx) == 0:
                    break
            if i == steps:
                break
            if i in marks:
                back = (
                    self._sparse_mark(state, x0, x_best, threat.eps)
                    if sparse
                    else self._halve_mark(state, loss_best, i - last_mark)
                )
                xa = torch.where(_rows(back, xa), x_best, xa)
                grad = torch.where(_rows(back, grad), grad_best, grad)
                last_mark = i
            size = _rows(state["step"], xa)
            if sparse:  # no momentum in APGD-L1: a sparse step of adaptive sparsity, projected exactly
                x_next = threat.clip(x0, xa + size * threat.sparse_direction(grad, state["fraction"]))
            else:
                z = threat.step(x0, xa, grad, size)
                a = 1.0 if i == 0 else self.momentum
                x_next = threat.clip(x0, xa + a * (z - xa) + (1 - a) * (xa - x_prev))
            x_prev, xa = xa, x_next.detach()
            new_loss, grad, logits = self.loss_and_grad(model, xa, ya, ta)
            queries[idx] += self.eot
            if not sparse:
                state["rises"] += (new_loss > loss).float()
            loss = new_loss
            up = loss > loss_best
            x_best = torch.where(_rows(up, xa), xa, x_best)
            grad_best = torch.where(_rows(up, grad), grad, grad_best)
            loss_best = torch.where(up, loss, loss_best)
        out[idx], out_loss[idx] = x_best, loss_best
        out_loss[fooled] = float("inf")
        return out, out_loss, fooled, queries

    def _halve_mark(self, state: dict[str, Tensor], loss_best: Tensor, period: int) -> Tensor:
        """At a checkpoint (L∞, L2): halve the step where the loss rose too rarely or nothing improved since
        the last halving; those samples go back to their best point (the returned mask)."""
        stalled = state["rises"] < self.rho * period
        stuck = ~state["reduced_at_mark"] & (loss_best <= state["best_at_mark"])
        halve = stalled | stuck
        state["step"] = torch.where(halve, state["step"] / 2, state["step"])
        state["rises"] = torch.zeros_like(state["rises"])
        state["best_at_mark"], state["reduced_at_mark"] = loss_best.clone(), halve
        return halve

    @staticmethod
    def _sparse_state(x: Tensor, xa: Tensor, eps: float, *, given: bool) -> dict[str, Tensor]:
        """APGD-L1's per-sample state: step ε, and the share of coordinates a step moves (20 % from a random
        start; from a given start, two thirds of the share it has changed)."""
        n, dims = len(x), x[0].numel()
        changed = (xa != x).flatten(1).sum(1).float()
        return {
            "step": torch.full((n,), eps, device=x.device),
            "fraction": changed / dims / 1.5 if given else torch.full((n,), 0.2, device=x.device),
            "changed_at_mark": changed if given else torch.full((n,), float(dims), device=x.device),
        }

    @staticmethod
    def _sparse_mark(state: dict[str, Tensor], x0: Tensor, x_best: Tensor, eps: float) -> Tensor:
        """At a checkpoint (L1, Croce & Hein 2021): the step share follows the best point's sparsity (two thirds
        of the share it changed). Where that sparsity fell by 5 % or more, the step resets to ε and the sample
        goes back to its best point (the returned mask); elsewhere the step shrinks by 1.5, within [ε/10, ε]."""
        changed = (x_best != x0).flatten(1).sum(1).float()
        sparser = changed / state["changed_at_mark"] < 0.95
        state["fraction"] = changed / x0[0].numel() / 1.5
        state["step"] = torch.where(sparser, torch.full_like(state["step"], eps), state["step"] / 1.5).clamp(
            eps / 10, eps
        )
        state["changed_at_mark"] = changed
        return sparser


def sparse_checkpoints(steps: int) -> list[int]:
    """Iterations at which APGD-L1 revisits its step and sparsity: every 4 % of the budget."""
    period = max(int(0.04 * steps), 1)
    return list(range(period, steps + 1, period))


def _rows(values: Tensor, like: Tensor) -> Tensor:
    """A per-sample vector shaped to broadcast over images (boolean masks stay boolean)."""
    return values.view(-1, *([1] * (like.ndim - 1))) if values.dtype == torch.bool else per_sample(values, like)
