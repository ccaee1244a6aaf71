"""BPDA: Backward Pass Differentiable Approximation with the identity (Athalye et al., ICML 2018).

An input transform that rounds (bit-depth reduction, JPEG quantisation) has a zero or undefined
gradient almost everywhere, so a gradient attack sees no signal and the defense looks robust
although it only masks gradients. Athalye et al. break such defenses by keeping the transform on
the forward pass and replacing it by the identity on the backward pass, since g(x) ≈ x.

Transforms route each non-differentiable step through ``non_differentiable`` and derive from
``NonDifferentiable``, so a model that holds one can be recognised before any attack runs; an attack
that wants the approximation runs its gradient passes inside ``straight_through(True)``. The flag is a context
variable, so it is local to the thread (and task) that set it and never leaks into predictions made
elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from torch import Tensor, nn

_STRAIGHT_THROUGH: ContextVar[bool] = ContextVar("robustkit_straight_through", default=False)


@contextmanager
def straight_through(enabled: bool = True) -> Iterator[None]:
    """Inside the block, ``non_differentiable`` steps pass gradients straight through (or not, with False)."""
    token = _STRAIGHT_THROUGH.set(bool(enabled))
    try:
        yield
    finally:
        _STRAIGHT_THROUGH.reset(token)


def is_straight_through() -> bool:
    """Whether ``non_differentiable`` currently approximates its step by the identity on the backward pass."""
    return _STRAIGHT_THROUGH.get()


class NonDifferentiable(nn.Module):
    """Base of modules whose forward pass routes a step through ``non_differentiable`` (rounding,
    quantising): a gradient attack without ``bpda=True`` sees a zero or useless gradient through them."""


def non_differentiable_modules(model: nn.Module) -> list[NonDifferentiable]:
    return [m for m in model.modules() if isinstance(m, NonDifferentiable)]


def non_differentiable(x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """``fn(x)``; inside ``straight_through(True)`` its gradient is the identity's.

    ``x + (fn(x) − x).detach()`` has the value of ``fn(x)`` (up to one rounding) and the gradient
    of ``x``: the forward pass still sees the transform, the backward pass skips it.
    """
    out = fn(x)
    return x + (out - x).detach() if _STRAIGHT_THROUGH.get() else out
