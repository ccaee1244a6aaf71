"""How an attack differentiates the model (BPDA, EOT): what the gradient-masking checks copy, and what a
leaderboard matches a cell with its check run by. Plain Python, so reading a store needs no torch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Adaptation:
    """How the evaluated attack differentiates the model (BPDA, EOT): the checks attack it the same way."""

    bpda: bool = False
    eot: int = 1

    @classmethod
    def of(cls, attack: Any) -> Adaptation:
        """From an attack, or its settings as a mapping (a stored cell's); attacks without them are plain."""
        get = attack.get if isinstance(attack, Mapping) else lambda key, default: getattr(attack, key, default)
        return cls(bool(get("bpda", False)), int(get("eot", 1) or 1))

    def settings(self) -> dict[str, Any]:
        return {"bpda": self.bpda, "eot": self.eot}
