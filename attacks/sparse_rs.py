"""Sparse-RS: score-based black-box random search over sets of k pixels (Croce et al., AAAI 2022).

Only forward passes, all under ``torch.no_grad()``. Each sample keeps one set of k pixel positions
painted in corners of the colour cube; each step moves a few of them to random positions outside
the set, with new random corners, and keeps the candidate unless the loss fell. One candidate per
sample per step, where one-pixel's differential evolution scores a whole population, is what makes
it cheap in queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from attacks.random_search import SparseRandomSearch, schedule_divisor
from robustkit.attack import Perturbed
from robustkit.errors import ConfigError
from robustkit.per_sample_random import SampleRandom
from robustkit.registry import ATTACKS
from robustkit.threats import L0, names

# the authors' L0 schedule: α is α_init / divisor once the step, rescaled to a 10 000-query budget, passes the threshold
_SCHEDULE = ((8000, 20), (6000, 15), (4000, 12), (2000, 10), (1000, 8), (500, 6), (200, 5), (50, 4), (0, 2))


@ATTACKS.register
@dataclass(frozen=True, kw_only=True)
class SparseRS(SparseRandomSearch):
    """Sparse-RS, L0 "pixels" version (Croce, Singh, Andriushchenko, Flammarion & Hein, AAAI 2022, arXiv:2006.12834).

    Threat model: L0, ``eps`` = k pixel positions that may change (all channels of a pixel count as
    one); score-based black box (logits only, no gradients). A changed pixel takes a corner of the
    colour cube ({0, 1} per channel), as in the paper. The start is k random positions with random
    corners; step t moves max(⌊α(t)·k⌋, 1) of them to random positions outside the set, each with a
    new random corner (the pixels left go back to x), and keeps the candidate if the loss did not
    fall (the paper's "≤" on a loss it minimises; ties are kept, so the search can cross plateaus).
    α(t) = ``alpha_init`` / 1, 2, 4, 5, 6, 8, 10, 12, 15, 20 as t, rescaled to 10 000 queries,
    passes 0, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 (the authors' schedule).
    Arguments: ``eps`` (pixels: 1, 3, 10…); ``queries`` (300: model evaluations per sample, the
    start included; the paper's 10 000); ``alpha_init`` (0.3, the paper's for pixels); ``loss``
    (margin | ce | dlr, maximised; targeted: toward the target; the authors' code switches to ce for
    targeted runs); ``eot`` (scores averaged over that many passes of a randomised model); ``seed``;
    ``precision`` (bf16: the search's passes under autocast, every success re-checked in float32; on
    a CPU without bf16 units fp32 may be faster). A sample stops costing queries once it is fooled.
    Every random draw is the sample's own (seed, index), so a sample's outcome does not depend on its batch.
    Cost of the defaults: at most 300 forward passes per image (a fooled image stops); ~54 s for
    1000 Fashion-MNIST images on smallcnn on 2 CPU cores with bf16 units (k = 1; fp32 took ~86 s).
    Robust accuracy there: 0.844 (one pixel fools 7.4 % of the correct images); 200 queries: 0.848
    in ~40 s. The paper's budget (10 000 queries, ~33× the defaults) is ``SparseRS.paper(eps=…)``;
    from the command line ``-o queries=10000 --precision fp32``.
    Shapes: x N×C×H×W in [0, 1], y (and target) int64 N; ``queries`` int64 N, model evaluations per
    sample (≤ ``queries`` × ``eot``); ``extras`` holds ``pixels`` (N×k×2 row/column) and ``values``
    (N×k×C) of the best set found.

    Example::

        from attacks import SparseRS
        result = SparseRS(eps=10, queries=10000)(model, x, y)
        fooled, spent = result.success, result.queries
    """

    name: ClassVar[str] = "sparse-rs"
    norms: ClassVar[tuple[str, ...]] = names(L0)

    eps: float = 1
    norm: str = L0.name
    alpha_init: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.queries < 1 or not 0 < self.alpha_init <= 1:
            raise ConfigError(
                f"sparse-rs needs queries ≥ 1 and 0 < alpha_init ≤ 1 (got {self.queries}, {self.alpha_init})"
            )

    def check_fits(self, image_shape: Sequence[int]) -> None:
        super().check_fits(image_shape)
        height, width = image_shape[-2:]
        if self.eps > height * width:
            raise ConfigError(
                f"sparse-rs: k = {int(self.eps)} pixels is more than the image's {height}×{width} = "
                f"{height * width} positions"
            )

    @torch.no_grad()
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, *, target, rng) -> Perturbed:
        self.check_fits(x.shape)
        n, channels, height, width = x.shape
        k, size = int(self.eps), height * width
        positions = rng.bits(size).argsort(dim=1, stable=True)[:, :k]  # a uniform k-subset per sample
        values = rng.randint(2, k, channels).to(x.dtype)
        best = _paint(x, positions, values)
        loss, fooled = self._score(model, best, y, target)
        spent = torch.ones(n, dtype=torch.long, device=x.device)  # the start is one query
        idx = (~fooled).nonzero().squeeze(1)  # the working set: samples still being attacked
        xa, la, ya, ra, pa, va = x[idx], loss[idx], y[idx], rng[idx], positions[idx], values[idx]
        ta = None if target is None else target[idx]
        made = 1  # queries made so far by each sample still in the working set
        for step in range(1, self.queries):
            if len(idx) == 0:
                break
            moves = self._moves(step, k, size)
            slots = _distinct(ra, k, moves)  # which members of the set move (the same count for every sample)
            new_pos = pa.scatter(1, slots, _outside(ra, pa, slots, size))
            new_val = va.scatter(
                1, slots[..., None].expand(-1, -1, channels), ra.randint(2, moves, channels).to(x.dtype)
            )
            cand = _paint(xa, new_pos, new_val)
            new_loss, hit = self._score(model, cand, ya, ta)
            take = hit | (new_loss >= la)
            pa = torch.where(take[:, None], new_pos, pa)
            va = torch.where(take[:, None, None], new_val, va)
            la = torch.where(take, new_loss, la)
            made = step + 1
            if hit.any():  # one host sync per step: shrinking the working set needs its new size
                positions[idx[hit]], values[idx[hit]], spent[idx[hit]] = pa[hit], va[hit], step + 1
                keep = ~hit
                idx, xa, la, ya, ra, pa, va = idx[keep], xa[keep], la[keep], ya[keep], ra[keep], pa[keep], va[keep]
                ta = None if ta is None else ta[keep]
        positions[idx], values[idx], spent[idx] = pa, va, made  # whoever is left used every query made
        pixels = torch.stack([positions // width, positions % width], dim=2)
        return Perturbed(
            _paint(x, positions, values), queries=spent * self.eot, extras={"pixels": pixels, "values": values}
        )

    def _moves(self, step: int, k: int, size: int) -> int:
        """How many of the k pixels step ``step`` moves: α(step)·k, at least 1, at most the free positions."""
        divisor = schedule_divisor(step, self.queries, _SCHEDULE)
        return min(max(int(self.alpha_init / divisor * k), 1), size - k if size > k else k)


def _paint(x: Tensor, positions: Tensor, values: Tensor) -> Tensor:
    """``x`` with pixel ``positions[i, j]`` (row-major index) of image i set to colour ``values[i, j]``."""
    n, c = x.shape[:2]
    out = x.clone().view(n, c, -1)
    out.scatter_(2, positions[:, None, :].expand(-1, c, -1), values.transpose(1, 2).to(x.dtype))
    return out.view_as(x)


def _distinct(rng: SampleRandom, high: int, m: int) -> Tensor:
    """N × m distinct integers, uniform in [0, high): each pick is moved past the earlier ones, in increasing order."""
    picks = torch.empty(len(rng), 0, dtype=torch.long, device=rng.device)
    for j in range(m):
        pick = rng.randint(high - j, 1)
        for taken in picks.sort(dim=1).values.unbind(1):
            pick = pick + (pick >= taken[:, None]).long()
        picks = torch.cat([picks, pick], dim=1)
    return picks


def _outside(rng: SampleRandom, positions: Tensor, slots: Tensor, size: int) -> Tensor:
    """One distinct random position per moved slot, outside the current set.

    The r-th position outside a sorted set t_0 < t_1 < … is r plus the number of j with t_j − j ≤ r,
    which costs N×m×k comparisons instead of a pass over every pixel. When the set is the whole
    image (k = H·W) nothing lies outside it: the moved pixels then stay put and only take new colours.
    """
    n, k = positions.shape
    m = slots.shape[1]
    taken = positions
    if k == size:
        kept = torch.ones_like(positions, dtype=torch.bool).scatter_(1, slots, False)
        taken = positions[kept].view(n, k - m)
    ranks = _distinct(rng, size - taken.shape[1], m)  # among the free positions
    below = taken.sort(dim=1).values - torch.arange(taken.shape[1], device=taken.device)  # non-decreasing
    return ranks + (below[:, None, :] <= ranks[:, :, None]).sum(2)
