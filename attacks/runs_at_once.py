"""Several runs of one attack (targets, restarts) over the same samples as one batch of run-major rows.

Row ``r·N + i`` is run r on sample i. Each step is then one pass over every row instead of one per run
over the few samples left, which on small batches is where the time goes (a pass's fixed cost). The
outcome stays that of the runs in turn: a sample is decided by the first run that succeeds on it, so a
row stops as soon as an earlier run on its sample has succeeded, and that run's result is the one kept.
"""

from __future__ import annotations

import torch
from torch import Tensor


def stacked(x: Tensor, runs: int) -> Tensor:
    """``x`` repeated once per run, run-major (runs·N × …)."""
    return x.repeat(runs, *[1] * (x.ndim - 1))


def settled_earlier(first: Tensor, rows: Tensor, done: Tensor) -> Tensor:
    """Record in ``first`` (int64, per sample: the earliest run that has succeeded on it, or the run
    count) the ``rows`` ``done`` now, and return which ``rows`` an earlier run has settled: they can stop."""
    sample, run = rows % len(first), rows // len(first)
    first.scatter_reduce_(0, sample[done], run[done], "amin")
    return run > first[sample]


def first_success(found: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
    """Per sample, the point of the first run that succeeded (``found``: bool, runs × N; ``points``: runs·N
    rows), or of run 0 where none did; and whether one did."""
    runs, n = found.shape
    pick = found.byte().argmax(0)  # argmax returns the first maximum: the earliest run
    return points.view(runs, n, *points.shape[1:])[pick, torch.arange(n, device=points.device)], found.any(0)
