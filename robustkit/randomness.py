"""The one marker that says a model's forward pass is random, so its verdicts need several draws."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import nn


class Randomised(nn.Module, ABC):
    """Base of modules whose forward pass draws random numbers (e.g. the Gaussian-noise defense).

    A model holding one is judged by a majority vote over several passes (``robustkit.predict``),
    not by one draw, which could go either way on the same input.
    """

    @abstractmethod
    def reseed(self) -> None:
        """Start the module's own random stream over from its seed (same draws, same verdicts)."""


def randomised_modules(model: nn.Module) -> list[Randomised]:
    return [m for m in model.modules() if isinstance(m, Randomised)]
