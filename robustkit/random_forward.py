"""The one marker that says a model's forward pass is random, so its verdicts need several draws."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn


class Randomised(nn.Module, ABC):
    """Base of modules whose forward pass draws random numbers (e.g. the Gaussian-noise defense).

    A model holding one is judged by a majority vote over several passes (``robustkit.predict``),
    not by one draw, which could go either way on the same input.
    """

    @abstractmethod
    def reseed(self) -> None:
        """Start the module's own random stream over from its seed (same draws, same verdicts)."""

    @abstractmethod
    def stream_state(self) -> Any:
        """Where the module's random stream stands now (for ``restore_stream``)."""

    @abstractmethod
    def restore_stream(self, state: Any) -> None:
        """Put the stream back where ``stream_state`` found it."""


@contextmanager
def fixed_draws(model: nn.Module) -> Iterator[None]:
    """Inside, every randomised module draws from its seed's start; afterwards its stream continues
    where it was, so a verdict taken in the middle of an attack does not replay the attack's draws."""
    modules = randomised_modules(model)
    states = [m.stream_state() for m in modules]
    for m in modules:
        m.reseed()
    try:
        yield
    finally:
        for m, state in zip(modules, states, strict=True):
            m.restore_stream(state)


def randomised_modules(model: nn.Module) -> list[Randomised]:
    return [m for m in model.modules() if isinstance(m, Randomised)]
