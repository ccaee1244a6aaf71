"""Gradient-masking checks: signs that a robust accuracy says more about the attack than the model.

After Athalye, Carlini & Wagner (ICML 2018) and Carlini et al.'s evaluation checklist (2019). Each
check measures something cheap on the evaluation subset and raises a ``Flag`` naming what it saw and
what to try; a clean report means none of these symptoms showed, not that the model is robust.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from robustkit.data.base import IndexedSplit, Split
from robustkit.errors import ConfigError
from robustkit.evaluate import evaluate_attack
from robustkit.modes import eval_mode
from robustkit.predict import num_classes, predict
from robustkit.registry import ATTACKS
from robustkit.threat import threat_class, threat_model

EPS_FACTORS = (0.25, 0.5, 1.0, 2.0)  # the ε sweep, as multiples of the evaluated ε
CHECKS_VERSION = 1  # part of stored check runs' keys: bump it when a check changes, and they run again


@dataclass(frozen=True)
class Flag:
    check: str  # short name, e.g. "randomised-forward"
    saw: str  # what was measured
    advice: str  # what to try next

    def line(self) -> str:
        return f"{self.check}: {self.saw} → {self.advice}"


@dataclass
class CheckReport:
    flags: list[Flag] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.flags

    def summary(self) -> str:
        """``ok`` or the flagged checks' names, for a table column."""
        return "ok" if self.ok else ", ".join(f.check for f in self.flags)

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "flags": [asdict(f) for f in self.flags], "figures": self.figures}


def run_checks(
    model: nn.Module,
    images: IndexedSplit | Tensor,
    labels: Tensor | None = None,
    *,
    norm: str,
    eps: float,
    steps: int = 10,
    square_queries: int = 1000,
    seed: int = 0,
    tolerance: float = 0.03,
    batch_size: int = 256,
) -> CheckReport:
    """Run every check on a split (or ``images`` and ``labels``; a few hundred are plenty) at the
    evaluated ``norm`` and ``eps``.

    The split is decoded once and held (every check attacks the same images again), so memory grows
    with its few hundred samples, not with the data set; forward passes go batch by batch.
    ``tolerance`` is the change in robust accuracy (absolute, plus one sample) taken as noticeable.
    """
    if isinstance(images, IndexedSplit):
        images, labels = images.load().images, images.labels
    elif labels is None:
        raise ConfigError("run_checks takes a split, or images and labels")
    report = CheckReport()
    param = next(model.parameters(), None)
    device = param.device if param is not None else images.device
    images, labels = images.to(device), labels.to(device)
    n = len(labels)
    slack = tolerance + 1.0 / max(n, 1)
    _check_forward(model, images, report, batch_size)
    _check_gradients(model, images, labels, report, batch_size)
    resident = Split(images, labels)

    def robust(attack) -> Tensor:
        return evaluate_attack(model, resident, attack, batch_size=batch_size, progress=False).robust

    # by registered name: the core names the attacks it needs, never imports a plugin module
    pgd, apgd, square = (ATTACKS.get(name) for name in ("pgd", "apgd", "square"))

    base = robust(pgd(eps=eps, norm=norm, steps=steps, seed=seed))
    sweep = {f: robust(pgd(eps=eps * f, norm=norm, steps=steps, seed=seed)).float().mean().item() if f != 1.0
             else base.float().mean().item() for f in EPS_FACTORS}  # fmt: skip
    report.figures.update({f"pgd_accuracy_eps_x{f:g}": a for f, a in sweep.items()})
    rises = [(a, b) for a, b in zip(EPS_FACTORS, EPS_FACTORS[1:]) if sweep[b] > sweep[a] + slack]
    if rises:
        a, b = rises[0]
        report.flags.append(Flag("accuracy-rises-with-eps",
                                 f"PGD robust accuracy {sweep[a]:.3f} at {a:g}·ε but {sweep[b]:.3f} at {b:g}·ε",
                                 "a larger ball contains the smaller one, so the attack is failing: the loss "
                                 "surface is masked; try more steps, restarts, or -o bpda=true / -o eot=16"))  # fmt: skip

    large, _ = threat_model(norm, eps).whole_box_budget(tuple(images.shape[1:]))  # a budget reaching the whole box
    unbounded = robust(pgd(eps=large, norm=norm, steps=max(steps, 20), seed=seed)).float().mean().item()
    report.figures["pgd_accuracy_unbounded"] = unbounded
    if unbounded > 0.1:
        report.flags.append(Flag("unbounded-attack-fails",
                                 f"PGD with ε covering the whole input box leaves accuracy at {unbounded:.3f} (expected ≈ 0)",
                                 "gradients do not lead anywhere: look for non-differentiable or randomised layers; "
                                 "try -o bpda=true, -o eot=16, or the square attack"))  # fmt: skip

    strong = robust(pgd(eps=eps, norm=norm, steps=10 * steps, restarts=3, seed=seed))
    report.figures["pgd_accuracy"] = base.float().mean().item()
    report.figures["pgd_strong_accuracy"] = strong.float().mean().item()
    drop = report.figures["pgd_accuracy"] - report.figures["pgd_strong_accuracy"]
    if drop > slack:
        report.flags.append(Flag("more-iterations-help",
                                 f"PGD-{steps}: {report.figures['pgd_accuracy']:.3f}, PGD-{10 * steps}×3 restarts: "
                                 f"{report.figures['pgd_strong_accuracy']:.3f}",
                                 "the weaker attack had not converged; report the ensemble (APGD + Square), not PGD-"
                                 f"{steps}"))  # fmt: skip

    # the white-box side is the best of three gradient attacks: PGD-CE alone has blind spots (a fixed
    # step, a saturating loss) that a black-box margin search can beat without any masking
    white = strong & robust(apgd(eps=eps, norm=norm, steps=10 * steps, seed=seed))
    if num_classes(model, images) >= 3:  # DLR needs three logits
        white &= robust(apgd(eps=eps, norm=norm, steps=10 * steps, loss="dlr", seed=seed))
    if threat_class(norm).name not in square.norms:  # no black-box search in this ball (L1): no comparison to make
        return report
    black = robust(square(eps=eps, norm=norm, queries=square_queries, seed=seed))
    only_black = (~black & white).float().mean().item()
    report.figures["square_accuracy"] = black.float().mean().item()
    report.figures["broken_only_by_square"] = only_black
    if only_black > slack:
        report.flags.append(Flag("black-box-beats-white-box",
                                 f"Square broke {only_black:.3f} of the samples that PGD and APGD (CE, DLR) could "
                                 f"not (Square accuracy {report.figures['square_accuracy']:.3f} vs white box "
                                 f"{white.float().mean().item():.3f})",
                                 "gradients mislead the white-box attacks: try -o bpda=true (non-differentiable "
                                 "layers) or -o eot=16 (randomness), and trust the ensemble's figure"))  # fmt: skip
    return report


def _check_forward(model: nn.Module, images: Tensor, report: CheckReport, batch_size: int) -> None:
    """A randomised forward pass makes every single-draw gradient (and verdict) a sample."""
    with torch.no_grad(), eval_mode(model):
        first = torch.cat([model(x).float() for x in images.split(batch_size)])
        second = torch.cat([model(x).float() for x in images.split(batch_size)])
    differs = (first - second).abs().amax().item()
    report.figures["forward_max_difference"] = differs
    if differs > 1e-4 * max(first.abs().amax().item(), 1.0):
        changed = (predict(model, images, draws=1) != first.argmax(1)).float().mean().item()  # one pass, no vote
        report.flags.append(Flag("randomised-forward",
                                 f"two eval-mode passes on the same inputs differ by up to {differs:.3g} in the "
                                 f"logits ({changed:.3f} of predictions change on a third pass)",
                                 "attack the expectation: -o eot=16 (Expectation over Transformation), and "
                                 "report accuracy over several draws"))  # fmt: skip


def _check_gradients(model: nn.Module, images: Tensor, labels: Tensor, report: CheckReport, batch_size: int) -> None:
    """Zero or NaN input gradients leave gradient attacks blind.

    The logit margin is differentiated, not cross-entropy, whose gradient underflows to 0 on very
    confident samples of a perfectly normal model.
    """
    probe = ATTACKS.get("pgd")(eps=0.0, loss="margin")
    with eval_mode(model):
        try:
            grad = torch.cat([probe.loss_and_grad(model, x, y, None)[1]
                              for x, y in zip(images.split(batch_size), labels.split(batch_size))])  # fmt: skip
        except RuntimeError:  # the output does not depend on the input through autograd at all
            grad = torch.zeros_like(images)
    flat = grad.flatten(1)
    nan = (~torch.isfinite(flat)).any(1).float().mean().item()
    zero = (flat == 0).all(1).float().mean().item()
    report.figures.update({"gradient_nan_fraction": nan, "gradient_zero_fraction": zero})
    if nan > 0:
        report.flags.append(Flag("nan-gradients", f"{nan:.3f} of the samples have NaN or infinite input gradients",
                                 "a layer is not differentiable where it is used; try -o bpda=true"))  # fmt: skip
    if zero > 0.05:
        report.flags.append(Flag("zero-gradients", f"{zero:.3f} of the samples have an input gradient of exactly 0",
                                 "a quantising or thresholding layer (e.g. bit-depth reduction, JPEG) blocks "
                                 "gradients: try -o bpda=true (straight-through backward), or the square attack"))  # fmt: skip
