"""Where an evaluation's time goes: passes of the model per phase (an attack's member), their seconds, and the
floor, the time those passes take alone (bare forward, or forward + input backward, at the same batch sizes)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn


class Counted(nn.Module):
    """The model, every pass recorded as [phase, rows, backward taken]: wraps what an attack calls directly
    (the official package calls the model it is given)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)
        self.phase = "other"
        self.calls: list[list] = []
        self.seconds: dict[str, float] = defaultdict(float)

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        record = [self.phase, len(x), False]
        self.calls.append(record)
        if out.requires_grad:  # the hook fires when a backward pass reaches the output
            out.register_hook(lambda grad, r=record: r.__setitem__(2, True))
        return out

    @contextmanager
    def phase_of(self, name: str) -> Iterator[None]:
        self.phase, start = name, time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start
            self.phase = "other"

    def timed(self, name: str, call: Callable) -> Callable:
        """``call`` with its passes and seconds counted under ``name``."""

        def run(*args, **kwargs):
            with self.phase_of(name):
                return call(*args, **kwargs)

        return run


@dataclass(frozen=True, kw_only=True)
class PhaseProfile:
    phase: str
    forwards: int  # passes (calls of the model), with or without a backward
    backwards: int
    image_passes: int  # rows summed over the passes
    seconds: float
    floor: float  # seconds of the same passes, bare


def profile(counted: Counted, image_shape: tuple[int, ...], reps: int = 3) -> list[PhaseProfile]:
    """Per phase (in the order first seen): passes, seconds and the floor, each distinct (rows, backward)
    timed bare as the best of ``reps``."""
    cost: dict[tuple[int, bool], float] = {}
    for _, rows, backward in counted.calls:
        if (rows, backward) not in cost:
            cost[rows, backward] = _bare(counted.model, (rows, *image_shape), backward, reps)
    phases: dict[str, list] = {}
    for phase, rows, backward in counted.calls:
        tally = phases.setdefault(phase, [0, 0, 0, 0.0])
        tally[0] += 1
        tally[1] += backward
        tally[2] += rows
        tally[3] += cost[rows, backward]
    return [
        PhaseProfile(phase=p, forwards=f, backwards=b, image_passes=r, seconds=counted.seconds.get(p, 0.0), floor=s)
        for p, (f, b, r, s) in phases.items()
    ]


def _bare(model: nn.Module, shape: tuple[int, ...], backward: bool, reps: int) -> float:
    x = torch.rand(shape)
    best = float("inf")
    for _ in range(reps + 1):  # the first is a warm-up
        start = time.perf_counter()
        if backward:
            point = x.clone().requires_grad_(True)
            torch.autograd.grad(model(point).sum(), point)
        else:
            with torch.no_grad():
                model(x)
        best = min(best, time.perf_counter() - start)
    return best


def budget_floor(
    model: nn.Module,
    image_shape: tuple[int, ...],
    robust: int,
    steps: int = 100,
    targets: int = 9,
    queries: int = 5000,
    reps: int = 3,
) -> dict[str, float]:
    """Seconds the standard AutoAttack budget (L∞, L2) cannot avoid: every member's whole budget on the
    ``robust`` samples no member breaks, as bare passes in one batch. APGD: steps + 1 gradient passes per
    run (1 run of APGD-CE, ``targets`` of APGD-T); FAB-T: per target, steps gradient passes and steps
    check passes as the official step takes them; Square: ``queries`` forward passes."""
    if robust == 0:
        return {"apgd-ce": 0.0, "apgd-t": 0.0, "fab-t": 0.0, "square": 0.0}
    shape = (robust, *image_shape)
    forward, gradient = _bare(model, shape, False, reps), _bare(model, shape, True, reps)
    return {
        "apgd-ce": (steps + 1) * gradient,
        "apgd-t": targets * (steps + 1) * gradient,
        "fab-t": targets * steps * (gradient + forward),
        "square": queries * forward,
    }
