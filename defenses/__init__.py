"""Defense plugins, one per file: ``from defenses import MadryTraining``.

Built-in defenses are imported here explicitly (importing a module registers it in
``robustkit.registry.DEFENSES``); third-party defenses come from the ``robustkit.defenses``
entry-point group through the same ``register``. Standard training (no defense) is
``robustkit.training.loop``.
"""

from defenses.fast import FastTraining
from defenses.gaussian_aug import GaussianAugmentation
from defenses.madry import MadryTraining
from defenses.one_hot import OneHotOutput
from defenses.trades import TradesTraining
from defenses.transforms import BitDepthReduction, GaussianNoise, JpegQuantization, Transformed
from robustkit.defense import Defense  # the base lives in the core; re-exported for plugin authors

__all__ = [
    "BitDepthReduction",
    "Defense",
    "FastTraining",
    "GaussianAugmentation",
    "GaussianNoise",
    "JpegQuantization",
    "MadryTraining",
    "OneHotOutput",
    "TradesTraining",
    "Transformed",
]
