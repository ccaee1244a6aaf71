"""AutoAttack at the published settings (Croce & Hein, ICML 2020): the standard version (APGD-CE → APGD-T →
FAB-T → Square) and the rand version for randomised defenses (APGD-CE → APGD-DLR, both with EOT)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from attacks.apgd import APGD
from attacks.cascade import Cascade
from attacks.fab import FAB
from attacks.square import Square
from robustkit.attack import Attack
from robustkit.errors import ConfigError
from robustkit.registry import ATTACKS
from robustkit.threats import L1, L2, Linf, names


def _standard(attack: AutoAttack) -> list[tuple[str, Attack]]:
    """``AutoAttack(version='standard')`` of the official package (``_set_version``). L∞ and L2: one
    APGD-CE run, APGD-T over 9 target classes, FAB-T over 9, Square with 5000 queries and its
    unrescaled p schedule; 100 iterations each; every sample gets the whole budget (no patience).
    L1 (Croce & Hein 2021): APGD-CE with 5 restarts and APGD-T over 5 targets, both on the 3ε → 2ε → ε
    schedule, then FAB-T over 9, then Square-L1 with the same 5000 queries."""
    common = dict(eps=attack.eps, norm=attack.norm, seed=attack.seed, eot=attack.eot)
    gradient = dict(common, precision=attack.precision, bpda=attack.bpda, steps=attack.steps)
    sparse = isinstance(attack.threat, L1)  # AutoAttack's L1 settings
    return [
        ("apgd-ce", APGD(**gradient, loss="ce", restarts=5 if sparse else 1, rho=0.75)),
        ("apgd-t", APGD(**gradient, loss="dlr", targets=5 if sparse else 9, restarts=1, rho=0.75)),
        ("fab-t", FAB(**gradient, targets=9, restarts=1, alpha_max=0.1, eta=1.05, beta=0.9)),
        # Square climbs on tiny margin gains that bf16 logits round away, so it scores in float32
        ("square", Square(**common, precision="fp32", queries=attack.queries, p_init=0.8, patience=0, rescaled=False)),
    ]


def _rand(attack: AutoAttack) -> list[tuple[str, Attack]]:
    """``AutoAttack(version='rand')`` of the official package, for randomised defenses: APGD-CE, then
    untargeted APGD-DLR, one run each of 100 iterations with gradients averaged over 20 draws (``eot``).
    No targets, no FAB, no Square. Under L1 the official rand version leaves APGD's 3ε → 2ε → ε schedule
    off (it sets it for the standard version only), and so do we."""
    gradient = dict(
        eps=attack.eps,
        norm=attack.norm,
        seed=attack.seed,
        eot=attack.eot,
        precision=attack.precision,
        bpda=attack.bpda,
        steps=attack.steps,
        restarts=1,
        rho=0.75,
    )
    if isinstance(attack.threat, L1):
        gradient["large_eps_first"] = False
    return [("apgd-ce", APGD(**gradient, loss="ce")), ("apgd-dlr", APGD(**gradient, loss="dlr"))]


VERSIONS = {"standard": _standard, "rand": _rand}  # version name → its members, as the official package defines it
VERSION_EOT = {"standard": 1, "rand": 20}  # draws each gradient (and score) averages when ``eot`` is not given
VERSION_QUERIES = {"standard": 5000, "rand": None}  # Square's budget; None: the version runs no Square


@ATTACKS.register
@dataclass(frozen=True, kw_only=True)
class AutoAttack(Cascade):
    """AutoAttack (Croce & Hein, ICML 2020, arXiv:2003.01690): standard or rand, at the official settings.

    The figure RobustBench's tables and papers quote as "AutoAttack (standard)" or, for a randomised
    defense, "AutoAttack (rand)", to stand beside theirs.

    ``version="standard"``: APGD with cross-entropy; targeted APGD with the DLR loss toward each of the 9
    highest-scoring wrong classes; targeted FAB toward the same 9 (a minimum-norm search that counts only
    within ε); Square, 5000 queries, for masked gradients. Each runs only on the samples the earlier ones
    left unbroken, every example verified. It costs more than ``ensemble`` (FAB-T, and Square's whole
    budget on every robust sample) for a figure that is rarely lower; use it where a comparable number
    is asked for. ``version="rand"`` (RobustBench's protocol for randomised defenses): APGD-CE, then
    untargeted APGD-DLR, with every gradient and score averaged over 20 draws of the model (EOT).
    A randomised model's verdicts here are majority votes over several passes (``robustkit.predict``),
    where the official package takes one pass: a figure that does not hang on one lucky draw.

    Threat model: L∞, L2 or L1 ball of radius ``eps``, within [0, 1]. Under L1 the standard version takes
    AutoAttack's L1 settings (APGD-CE × 5 restarts, APGD-T × 5 targets, both 3ε → 2ε → ε; FAB-T × 9;
    Square-L1, "Mind the box", ICML 2021).
    Arguments: ``eps``, ``norm``; ``version`` (standard | rand); ``steps`` (100, each APGD and FAB run) and
    ``queries`` (5000, Square's; the rand version runs no Square and takes none): the published budget,
    lower only for a quick look (the figure is then not AutoAttack's, and the record's settings say so);
    ``seed``; ``precision`` (autocast for the gradient members; every success is verified at full
    precision; Square scores in float32); ``eot`` (passes each gradient and score averages, for every
    member: the version's by default, 1 for standard and 20 for rand) and ``bpda`` (for non-differentiable
    defenses; neither version assumes it). Target counts are capped at the number of classes − 1, and
    the DLR members are skipped where the loss is undefined (APGD-T below 4 classes, APGD-DLR below 3).
    Shapes: x N×C×H×W in [0, 1], y int64 N. ``extras["broken_by"]`` (int64 N): the member that broke
    each sample (its position in ``extras["members"]``: standard apgd-ce, apgd-t, fab-t, square; rand
    apgd-ce, apgd-dlr) or −1.
    Cost of the defaults: standard, 100 + 9 × 100 APGD steps, 9 × 100 FAB steps and 5000 Square queries
    per robust sample at most; ~390 s for 1000 Fashion-MNIST images on smallcnn on 2 CPU cores (L∞ ε = 0.1,
    robust accuracy 0.030, most of it Square's whole budget on the robust few). rand: 2 × 100 steps of
    20 passes each per robust sample at most.

    Example::

        from attacks import AutoAttack
        result = AutoAttack(eps=8/255)(model, x, y)
        robust_accuracy = 1 - result.success.float().mean()
        randomised = AutoAttack(eps=8/255, version="rand")(noisy_model, x, y)
    """

    name: ClassVar[str] = "autoattack"
    norms: ClassVar[tuple[str, ...]] = names(Linf, L2, L1)

    version: str = "standard"
    steps: int = 100
    queries: int | None = None  # None: the version's (5000; rand runs no Square)
    eot: int | None = None  # None: the version's (1; rand 20)

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:  # before the members are built: the version decides them
            raise ConfigError(f"AutoAttack: unknown version '{self.version}' (known: {', '.join(VERSIONS)})")
        if self.queries is not None and VERSION_QUERIES[self.version] is None:
            raise ConfigError(f"AutoAttack's {self.version} version runs no Square: queries does not apply")
        # resolved here, so the record and the gradient-masking checks (which copy ``eot``) see what ran
        if self.queries is None:
            object.__setattr__(self, "queries", VERSION_QUERIES[self.version])
        if self.eot is None:
            object.__setattr__(self, "eot", VERSION_EOT[self.version])
        super().__post_init__()
        self.members()  # validates the members' settings

    def members(self) -> list[tuple[str, Attack]]:
        return VERSIONS[self.version](self)
