"""RayS: a label-only L∞ attack that searches over sign directions, hierarchically by blocks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from robustkit.errors import ConfigError
from robustkit.label_only import LabelAttack, LabelOracle
from robustkit.per_sample_random import SampleRandom
from robustkit.registry import ATTACKS
from robustkit.threats import Linf, names
from robustkit.threats.base import clip_to_box


@ATTACKS.register
@dataclass(frozen=True, kw_only=True)
class RayS(LabelAttack):
    """RayS (Chen & Gu, KDD 2020, arXiv:2006.12792): the ray search attack, label queries only, L∞.

    Each sample keeps a sign direction s ∈ {−1, 1}^d and the smallest radius r at which clip(x + r·s) is
    misclassified; r is the example's L∞ distance. It flips one block of s at a time, blocks halving in
    size after a full pass (1, 2, 4… blocks over the flattened image), and keeps a flip when one query at
    the current r says the new ray is adversarial there, then binary-searches its radius. No randomness:
    the search is the same for every seed. Every sample is one row of each batched step.
    Arguments: ``eps``; ``queries`` (label queries per sample; a sample within ε stops, so its ``queries``
    is the count at which it was first broken); ``tol`` (1e-3: binary-search precision in the official
    code's unit, ‖s‖₂ = 1, i.e. 1e-3/√d in L∞); ``min_norm`` (False; True: spend the whole budget seeking
    each sample's smallest example, reported at its own norm).
    Shapes: x N×C×H×W in [0, 1], y (and target) int64 N; ``queries`` int64 N (≤ ``queries`` plus one
    binary search).
    Cost of the defaults: 1000 queries, ~24 s for 1000 Fashion-MNIST images on lenet5 on 2 idle CPU cores (ε = 0.1,
    robust accuracy 0.269). Cost: ``queries`` forward passes per image at most (a broken image stops), but in many small passes (its
    binary searches are sequential); 10 000 queries on 100 Fashion-MNIST images on lenet5 (ε = 0.1) took
    314 s on two shared CPU cores, HopSkipJump 181 s (``benchmarks/label_only_queries.py``).

    Example::

        from attacks import RayS
        result = RayS(eps=0.1, queries=5000)(model, x, y)
    """

    name: ClassVar[str] = "rays"
    norms: ClassVar[tuple[str, ...]] = names(Linf)

    tol: float = 1e-3
    min_norm: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.tol > 0:
            raise ConfigError(f"RayS needs tol > 0, got {self.tol!r}")

    @property
    def minimum_norm(self) -> bool:
        return self.min_norm

    def search(self, oracle: LabelOracle, x: Tensor, rng: SampleRandom) -> Tensor:
        n, d = len(x), x[0].numel()
        tol = self.tol / math.sqrt(d)
        sign = torch.ones(n, d, device=x.device, dtype=x.dtype)
        radius = torch.full((n,), math.inf, device=x.device)  # inf: no adversarial ray found yet
        self._try(oracle, x, sign, sign, torch.arange(n, device=x.device), radius, tol)
        level, block = 0, 0
        while True:
            active = oracle.spent < self.queries
            if not self.min_norm:
                active &= radius > self.eps
            rows = active.nonzero().squeeze(1)
            if len(rows) == 0:
                break
            size = math.ceil(d / 2**level)
            lo, hi = block * size, min(d, (block + 1) * size)
            trial = sign[rows].clone()
            trial[:, lo:hi] *= -1
            self._try(oracle, x, sign, trial, rows, radius, tol)
            block += 1
            if block == 2**level or hi == d:  # a pass done: blocks halve (single pixels: passes repeat)
                level, block = level + (size > 1), 0
        return _point(x, sign, radius.clamp(max=1.0))

    def _try(
        self, oracle: LabelOracle, x: Tensor, sign: Tensor, trial: Tensor, rows: Tensor, radius: Tensor, tol: float
    ) -> None:
        """Samples ``rows`` take direction ``trial`` where one query says it is adversarial at their current
        radius (at the box's corner, radius 1, while they have none), and its radius by binary search."""
        high = radius[rows].clamp(max=1.0)
        better = oracle.fooled(_point(x[rows], trial, high), rows)
        keep = rows[better]
        sign[keep] = trial[better]
        radius[keep] = self._bisect(oracle, x[keep], sign[keep], keep, high[better], tol)

    def _bisect(self, oracle: LabelOracle, x: Tensor, sign: Tensor, rows: Tensor, high: Tensor, tol: float) -> Tensor:
        """The smallest radius along each ray still adversarial, to ``tol``, knowing ``high`` is (inf: none)."""
        high = high.clone()
        low = torch.zeros_like(high)
        for _ in range(64):  # a float32 interval cannot be halved usefully more often (a guard, never reached)
            open_ = ((high - low) > tol) & (high < math.inf)
            if not open_.any():
                break
            mid = (high[open_] + low[open_]) / 2
            hit = oracle.fooled(_point(x[open_], sign[open_], mid), rows[open_])
            high[open_] = torch.where(hit, mid, high[open_])
            low[open_] = torch.where(hit, low[open_], mid)
        return high


def _point(x: Tensor, sign: Tensor, radius: Tensor) -> Tensor:
    """clip(x + r·s) per sample, ``sign`` flat (N×d)."""
    return clip_to_box(x + radius[:, None, None, None].to(x.dtype) * sign.view_as(x))
