"""Attack plugins, one per file: ``from attacks import FGSM, PGD``.

Built-in attacks are imported here explicitly (importing a module registers it in
``robustkit.registry.ATTACKS``); third-party attacks come from the ``robustkit.attacks``
entry-point group through the same ``register``.
"""

from attacks.apgd import APGD
from attacks.autoattack import AutoAttack
from attacks.cw import CW
from attacks.deepfool import DeepFool
from attacks.ensemble import Ensemble
from attacks.fab import FAB
from attacks.fast_ensemble import FastEnsemble
from attacks.fgsm import FGSM
from attacks.fmn import FMN
from attacks.fooling import Fooling
from attacks.hopskipjump import HopSkipJump
from attacks.one_pixel import OnePixel
from attacks.patch import AdversarialPatch
from attacks.patch_rs import PatchRS
from attacks.pgd import PGD
from attacks.rays import RayS
from attacks.sparse_rs import SparseRS
from attacks.spatial import SpatialAttack
from attacks.square import Square
from attacks.stadv import StAdv
from attacks.universal import Universal
from attacks.universal_patch import UniversalPatch
from robustkit.attack import Attack, AttackResult, GradientAttack, LossGradientAttack, Perturbed  # bases: the core's

__all__ = [
    "APGD",
    "AdversarialPatch",
    "AutoAttack",
    "CW",
    "FAB",
    "FastEnsemble",
    "FMN",
    "FGSM",
    "Fooling",
    "HopSkipJump",
    "RayS",
    "PGD",
    "DeepFool",
    "Ensemble",
    "OnePixel",
    "PatchRS",
    "SparseRS",
    "SpatialAttack",
    "Square",
    "StAdv",
    "Universal",
    "UniversalPatch",
    "Attack",
    "AttackResult",
    "GradientAttack",
    "LossGradientAttack",
    "Perturbed",
]
