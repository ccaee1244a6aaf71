"""The shortest step from a point onto a hyperplane without leaving the box [0, 1], per Lp norm.

FAB (``attacks/fab.py``) linearises the decision boundary into a hyperplane w·z = b and projects both
its iterate and the clean image onto it; the box constraint is what makes this more than a closed
form. Every coordinate moves toward the hyperplane (the side w's sign gives) by mᵢ ≥ 0, at most its
room uᵢ before the box's edge, and closes |wᵢ|·mᵢ of the gap. The smallest such move is
  L∞: mᵢ = min(λ, uᵢ);   L2: mᵢ = min(μ|wᵢ|, uᵢ);   L1: whole coordinates by falling |wᵢ|, one partly,
with λ, μ found by one sort and a search over breakpoints. Where the box cannot reach the hyperplane
the result is the corner that comes closest (every coordinate moved as far as it can).
"""

from __future__ import annotations

import torch
from torch import Tensor

DUAL_P = {"linf": 1.0, "l2": 2.0, "l1": float("inf")}  # ‖·‖_* that turns a logit gap into a distance


def dual_norm(w: Tensor, norm: str) -> Tensor:
    """‖w‖_* per row of w (N×D): the rate at which a unit step in ``norm`` can change w·z."""
    return w.norm(p=DUAL_P[norm], dim=-1)


def project(t: Tensor, w: Tensor, b: Tensor, norm: str) -> Tensor:
    """δ (N×D) of smallest ``norm`` with w·(t + δ) = b and t + δ in [0, 1], per row; float32 throughout."""
    t, w, b = t.float(), w.float(), b.float()
    c = (w * t).sum(1) - b  # the gap: w·z must fall by c
    direction = -torch.sign(c)[:, None] * torch.sign(w)  # each coordinate moves this way (0 where wᵢ = 0)
    room = torch.where(direction > 0, 1 - t, t).clamp_min(0)
    a, gap = w.abs(), c.abs()
    if norm == "l1":
        move = _greedy(a, room, gap)
    elif norm == "linf":
        move = torch.minimum(_level(a, room, gap)[:, None], room)
    elif norm == "l2":
        ratio = torch.where(a > 0, room / a.clamp_min(1e-30), torch.zeros_like(a))
        level = _level(a * a, ratio, gap)[:, None]
        move = torch.where(a > 0, torch.minimum(level * a, room), torch.zeros_like(a))  # ∞·0 is no move
    else:
        raise ValueError(f"no hyperplane projection for '{norm}'")
    return direction * move


def _level(k: Tensor, r: Tensor, gap: Tensor) -> Tensor:
    """Per row, the smallest s ≥ 0 with Σᵢ kᵢ·min(s, rᵢ) ≥ gap (inf where even s = ∞ falls short).

    The sum is piecewise linear and rising in s, with breakpoints at the rᵢ: evaluate it at each
    sorted breakpoint, find the first that reaches the gap, and solve the linear piece before it.
    """
    r, order = r.sort(1)
    k = k.gather(1, order)
    below = (k * r).cumsum(1)  # Σ_{i≤j} kᵢrᵢ: the saturated coordinates' share
    above = k.sum(1, keepdim=True) - k.cumsum(1)  # Σ_{i>j} kᵢ: the slope beyond breakpoint j
    reached = below + r * above  # the sum at s = r_(j)
    j = torch.searchsorted(reached, gap[:, None].contiguous()).squeeze(1)
    feasible = j < r.shape[1]
    prev = (j - 1).clamp_min(0)[:, None]
    saturated = torch.where(j > 0, below.gather(1, prev).squeeze(1), torch.zeros_like(gap))
    slope = torch.where(j > 0, above.gather(1, prev).squeeze(1), k.sum(1))
    s = (gap - saturated).clamp_min(0) / slope.clamp_min(1e-30)
    return torch.where(feasible, s, torch.full_like(s, float("inf")))


def _greedy(a: Tensor, room: Tensor, gap: Tensor) -> Tensor:
    """L1: fill coordinates in order of falling |wᵢ| (most gap closed per unit moved) until the gap closes."""
    a_sorted, order = a.sort(1, descending=True)
    room_sorted = room.gather(1, order)
    closed = (a_sorted * room_sorted).cumsum(1)
    before = closed - a_sorted * room_sorted  # gap closed by the coordinates ahead of each
    partial = ((gap[:, None] - before) / a_sorted.clamp_min(1e-30)).clamp(min=0)
    move_sorted = torch.where(a_sorted > 0, torch.minimum(partial, room_sorted), torch.zeros_like(a_sorted))
    return torch.zeros_like(a).scatter(1, order, move_sorted)
