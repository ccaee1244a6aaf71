"""The fast reliable figure: APGD-CE → APGD-T toward MALT-ranked targets → a short Square, as a cascade."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from attacks.apgd import APGD
from attacks.cascade import Cascade
from attacks.square import Square
from robustkit.attack import Attack, Perturbed
from robustkit.errors import ConfigError
from robustkit.registry import ATTACKS
from robustkit.threats.hyperplane import dual_norm


def linear_distances(logits: Tensor, x: Tensor, y: Tensor, classes: Tensor) -> Tensor:
    """Per sample and candidate class c (N×K): the linearised distance (z_y − z_c) / ‖∇ₓ(z_y − z_c)‖_* to
    c's decision boundary, in the dual of the L∞ norm (ℓ1): MALT's targeting score. ``logits`` must be
    ``model(x)`` with ``x`` requiring grad; one backward pass per candidate, each for the whole batch."""
    gap = logits.gather(1, y[:, None]) - logits.gather(1, classes)
    out = torch.empty(gap.shape, device=x.device)
    for k in range(classes.shape[1]):
        (w,) = torch.autograd.grad(gap[:, k].sum(), x, retain_graph=k + 1 < classes.shape[1])
        out[:, k] = gap[:, k].detach().float() / dual_norm(w.flatten(1).float(), "linf").clamp_min(1e-12)
    return out


@dataclass(frozen=True, kw_only=True)
class MaltAPGD(APGD):
    """APGD-T whose targets are the ``targets`` wrong classes nearest by a linear estimate (MALT, Melamed et
    al. 2023), not the highest logits: each run pulls toward one target, success is any misclassification."""

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, *, target, rng) -> Perturbed:
        if target is not None or not self.targets:
            return super().perturb(model, x, y, target=target, rng=rng)
        with self.differentiable():
            probe = x.detach().requires_grad_(True)
            logits = self.mean_logits(model, probe).float()
            wrong = logits.detach().scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)[:, :-1]
            distance = linear_distances(logits, probe, y, wrong)
        ranked = wrong.gather(1, distance.argsort(1))
        best, done = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        queries = torch.full((len(x),), wrong.shape[1] * self.eot, dtype=torch.long, device=x.device)
        for k in range(min(self.targets, ranked.shape[1])):
            todo = (~done).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            adv, _, fooled, spent = self._run(model, x[todo], y[todo], ranked[todo, k], None, rng[todo])
            queries[todo] += spent
            best[todo[fooled]], done[todo[fooled]] = adv[fooled], True
        return Perturbed(best, queries=queries)


@ATTACKS.register
@dataclass(frozen=True, kw_only=True)
class FastEnsemble(Cascade):
    """The reliable figure at a tenth of AutoAttack's cost: short APGD-CE, then short APGD-T toward the few
    targets a linear estimate puts nearest, then a short Square with patience, each on what is left.

    Where the time goes in AutoAttack on a robust model: every robust sample pays all nine APGD-T and
    FAB-T targets and Square's 5000 queries. This cascade adopts (and cites) two published remedies:
    MALT (Melamed et al., "Adversarial attacks via mesoscopic almost linearity targeting", 2023): rank
    the wrong classes by (z_y − z_c) / ‖∇(z_y − z_c)‖₁, the distance to c's linearised boundary, and
    attack only the nearest ``targets`` (MALT's finding: the nearest few carry nearly all of APGD-T's
    successes); A³ (Liu et al., "Practical evaluation of adversarial robustness via adaptive auto attack",
    CVPR 2022): far fewer iterations per run suffice, and a sample stops costing passes as soon as it
    is decided (here: fooled, or stuck at a zero gradient, the APGD members' own rules). FAB-T is left
    out, as ``ensemble`` does. Square stays, short, for masked gradients; on a defense that masks them
    (bit-depth, JPEG without BPDA) the figure is an upper bound the default checks flag, not a claim.

    Threat model: L∞ (MALT's ranking reads the ℓ1 dual norm), within [0, 1].
    Arguments: ``eps``; ``steps`` (APGD-CE's and each APGD-T run's iterations); ``targets`` (APGD-T runs,
    capped at classes − 1); ``queries`` (Square's budget per sample); ``patience`` (a sample's Square stops
    after this many queries in a row that did not raise its margin: per sample, so no outcome depends on
    the batch); ``seed``, ``precision``, ``eot``, ``bpda`` as in ``ensemble``.
    Shapes: x N×C×H×W in [0, 1], y int64 N. ``extras["broken_by"]``: 0 APGD-CE, 1 APGD-T, 2 Square, −1.
    Cost of the defaults: 100 APGD-CE steps, 3 × 100 APGD-T steps, up to 500 Square queries, each only on
    the samples still robust: ~23 s for 1000 Fashion-MNIST images on smallcnn on 2 CPU cores (L∞ ε = 0.1,
    robust accuracy 0.032, idle machine). On one CPU thread, CPU time on a loaded machine: on a Madry smallcnn,
    50 Fashion-MNIST images, 3.3 s APGD-CE, 9.8 s APGD-T, 8.1 s Square, where every sample still robust
    spent all 500 queries (its margin kept rising within 100). Against the official AutoAttack, side by side
    (``benchmarks/ensemble_vs_autoattack.py --fast``, figures in the README): robust accuracy within one
    image of 500 on standard smallcnn, equal on Madry, at 0.07–0.08× its wall and 0.11–0.13× its CPU time.

    Example::

        from attacks import FastEnsemble
        result = FastEnsemble(eps=0.1)(model, x, y)
    """

    name: ClassVar[str] = "fast-ensemble"
    norms: ClassVar[tuple[str, ...]] = ("linf",)

    steps: int = 100
    targets: int = 3
    queries: int = 500
    patience: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.queries < 1 or self.patience < 0:
            raise ConfigError(f"fast-ensemble needs queries ≥ 1 and patience ≥ 0 (got {self.queries}, {self.patience})")
        self.members()  # validates steps and targets

    def members(self) -> list[tuple[str, Attack]]:
        common = dict(eps=self.eps, norm=self.norm, seed=self.seed, eot=self.eot)
        gradient = dict(common, precision=self.precision, bpda=self.bpda, steps=self.steps)
        return [
            ("apgd-ce", APGD(**gradient, loss="ce")),
            ("apgd-t-malt", MaltAPGD(**gradient, loss="dlr", targets=self.targets)),
            ("square", Square(**common, precision="fp32", queries=self.queries, patience=self.patience)),
        ]
