"""Threat models by name: the base and its lookups (``base``), the Lp balls (``lp``) and the rest, one module each.

May import torch and robustkit's leaf modules (errors, registry, plugin_index, per_sample_random, predict, modes, random_forward);
nothing else of robustkit. Importing the package registers every built-in threat model.
"""

from robustkit.threats import flow, fooling, patch, spatial  # noqa: F401  (flow fields; fooling images; patches; rotations and translations)
from robustkit.threats.base import (
    ThreatModel,
    clip_to_box,
    default_eps,
    names,
    parse_eps,
    per_sample,
    threat_class,
    threat_family,
    threat_model,
)
from robustkit.threats.lp import DEFAULT_NORM, L0, L1, L2, Linf, LpBall

__all__ = [
    "DEFAULT_NORM",
    "L0",
    "L1",
    "L2",
    "Linf",
    "LpBall",
    "ThreatModel",
    "clip_to_box",
    "default_eps",
    "names",
    "parse_eps",
    "per_sample",
    "threat_class",
    "threat_family",
    "threat_model",
]
