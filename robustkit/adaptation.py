"""What keys a check run: how many checks (``LEVELS``) and how the attack differentiates the model (BPDA, EOT),
which the checks copy and a leaderboard matches a cell with its check run by. Plain Python: reading a store needs no torch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from robustkit.errors import ConfigError


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


LEVELS = ("none", "default", "full")  # how many gradient-masking checks run beside an evaluation


def check_level(value: bool | str | None) -> str:
    """``none``, ``default`` or ``full`` from what a caller passes (True: full; False or None: none)."""
    if value is True or value is False or value is None:
        return "full" if value else "none"
    if value not in LEVELS:
        raise ConfigError(f"checks must be one of {', '.join(LEVELS)} (or true / false), got {value!r}")
    return value
