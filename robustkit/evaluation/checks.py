"""Gradient-masking checks: signs that a robust accuracy says more about the attack than the model.

After Athalye, Carlini & Wagner (ICML 2018) and Carlini et al.'s evaluation checklist (2019). Each
check measures something cheap on the evaluation subset and raises a ``Flag`` naming what it saw and
what to try; a clean report means none of these symptoms showed, not that the model is robust.

Two levels, one function: ``default`` (run by every evaluation unless turned off) looks for the
symptoms of a non-differentiable, randomised or saturating model at a few percent of the attack's
cost; ``full`` adds the ε sweep, the strong PGD and the APGD/Square comparison. The checks attack the
model the way the evaluated attack does (``Adaptation``: its BPDA and EOT), so an adapted run is judged
as adapted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from robustkit.adaptation import Adaptation  # its own light module: leaderboards read it without torch
from robustkit.bpda import non_differentiable_modules
from robustkit.data.base import IndexedSplit, Split
from robustkit.errors import ConfigError
from robustkit.evaluation.engine import evaluate_attack, reseed_randomness
from robustkit.modes import eval_mode
from robustkit.predict import num_classes, predict
from robustkit.random_forward import randomised_modules
from robustkit.registry import ATTACKS
from robustkit.results.outcome import share
from robustkit.threats import threat_class, threat_model

EPS_FACTORS = (0.25, 0.5, 1.0, 2.0)  # the ε sweep, as multiples of the evaluated ε
CHECKS_VERSION = 6  # part of stored check runs' keys: bump it when a check changes, and they run again
DEFAULT_SAMPLES = 64  # the default checks look at this many samples at most (the cost target: ≤ 15 % of PGD's)
FORWARD_SAMPLES = 8  # the determinism check's second pass: a randomised layer changes every sample's logits
DEFAULT_SQUARE_QUERIES = 10  # the default black-box probe: a short Square run on what the white box left (its
# first, largest windows: on the masked tiny models of tests/test_default_checks.py 10 queries raise the same flags as 30)
DEFAULT_SQUARE_SAMPLES = 32  # … on at most this many of those samples (Square's share dominates the cost)
# … each sample stopping once this many queries in a row have not raised its own margin (Square's patience, per
# sample so the probe does not depend on the batch): a sample that stalls stops costing queries, and 30 sequential
# queries on a handful of samples cost more than PGD at n = 200; where gradients mislead, Square keeps climbing
# (bit-depth, JPEG, Gaussian-noise smallcnn: under the old batch-wide rule no gap between two successes exceeded 5)
DEFAULT_SQUARE_PATIENCE = 5
DEFAULT_UNBOUNDED_STEPS = 5  # a whole-box ball needs few steps on a differentiable model
UNBOUNDED_LIMIT = 0.1  # accuracy under PGD with a whole-box ε above this is flagged (expected ≈ 0)
_CE_UNDERFLOW = 1e-30  # cross-entropy's gradient w.r.t. the logits below this may reach the input as exactly 0


# what blinds gradient attacks only: an attack with a gradient-free member (``gradient_free_members``) searched
# without them, so on its figure these say where BPDA may still lower it, not that the figure is masked
GRADIENT_BLIND = frozenset({"nan-gradients", "zero-gradients", "saturated-softmax", "unbounded-attack-fails"})


def unadapted_layers(model: nn.Module, attack: Any) -> list[str]:
    """Warnings from the model's modules alone, before any check runs: a non-differentiable layer under an
    attack that could use BPDA and does not (unless a gradient-free member bounds its figure: ``bounded_layers``),
    a randomised one under an attack that could use EOT and does not."""
    said = []
    rounding = _rounding_layers(model)
    if rounding and getattr(attack, "bpda", True) is False and not attack.gradient_free_members():
        said.append(
            f"the model holds a non-differentiable layer ({rounding}) and the attack runs "
            "without BPDA: its gradients are zero or meaningless → try -o bpda=true"
        )
    random = sorted({type(m).__name__ for m in randomised_modules(model)})
    if random and getattr(attack, "eot", 2) == 1:
        said.append(
            f"the model holds a randomised layer ({', '.join(random)}) and the attack takes one draw per "
            "step → try -o eot=16 (Expectation over Transformation)"
        )
    return said


def bounded_layers(model: nn.Module, attack: Any) -> list[str]:
    """Notes, where ``unadapted_layers`` is silent because the attack's gradient-free member answered the
    layer: it bounded the figure without gradients, and BPDA may still lower it."""
    rounding = _rounding_layers(model)
    free = attack.gradient_free_members()
    if not rounding or not free or getattr(attack, "bpda", False) is True:
        return []
    remedy = "-o bpda=true" if hasattr(attack, "bpda") else "a gradient attack with -o bpda=true"
    return [
        f"the model holds a non-differentiable layer ({rounding}), attacked without BPDA: {', '.join(free)}, "
        f"which needs no gradient, bounded the figure → {remedy} may still lower it"
    ]


def answered_flags(flags: list[Flag], attack: Any) -> tuple[list[Flag], list[Flag]]:
    """The flags split into (alarms, answered): a symptom that blinds gradients only (``GRADIENT_BLIND``) is
    answered by an attack with a gradient-free member, which searched without them."""
    free = bool(attack.gradient_free_members())
    answered = [f for f in flags if free and f.check in GRADIENT_BLIND]
    return [f for f in flags if f not in answered], answered


def _rounding_layers(model: nn.Module) -> str:
    return ", ".join(sorted({type(m).__name__ for m in non_differentiable_modules(model)}))


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
    level: str = "full"
    adaptation: Adaptation = Adaptation()

    @property
    def ok(self) -> bool:
        return not self.flags

    def summary(self) -> str:
        """``ok`` or the flagged checks' names, for a table column."""
        return "ok" if self.ok else ", ".join(f.check for f in self.flags)

    def to_dict(self) -> dict:
        return {
            "summary": self.summary(),
            "flags": [asdict(f) for f in self.flags],
            "figures": self.figures,
            "level": self.level,
            "adaptation": self.adaptation.settings(),
        }


def run_checks(
    model: nn.Module,
    images: IndexedSplit | Tensor,
    labels: Tensor | None = None,
    *,
    norm: str,
    eps: float,
    level: str = "full",
    adaptation: Adaptation = Adaptation(),
    white: Tensor | None = None,
    steps: int = 10,
    square_queries: int = 1000,
    seed: int = 0,
    tolerance: float = 0.03,
    batch_size: int = 256,
) -> CheckReport:
    """Run the checks of ``level`` (``default`` or ``full``) on a split (or ``images`` and ``labels``; a
    few hundred are plenty, ``default`` uses ``DEFAULT_SAMPLES``) at the evaluated ``norm`` and ``eps``.

    ``white`` (bool per sample: robust under the evaluated attack) lets the default level compare the
    black box with the figure actually reported instead of running PGD again. The default level looks only
    where that white-box attack failed (a broken sample cannot inflate the figure): its gradient checks
    and probes attack those samples, the fractions it reports are of all of them. The split is decoded once
    and held (every check attacks the same images again), so memory grows with its few hundred samples,
    not with the data set; forward passes go batch by batch. ``tolerance`` is the change in robust
    accuracy (absolute, plus one sample) taken as noticeable.
    """
    if isinstance(images, IndexedSplit):
        images, labels = images.load().images, images.labels
    elif labels is None:
        raise ConfigError("run_checks takes a split, or images and labels")
    if level not in ("default", "full"):
        raise ConfigError(f"run_checks runs the default or the full checks, not {level!r}")
    quick = level == "default"
    report = CheckReport(level=level, adaptation=adaptation)
    param = next(model.parameters(), None)
    device = param.device if param is not None else images.device
    images, labels = images.to(device), labels.to(device)
    n = len(labels)
    slack = tolerance + 1.0 / max(n, 1)

    def robust(attack, keep: Tensor | None = None) -> Tensor:
        """Per sample, robust under ``attack``; with ``keep`` only those samples are attacked (others: False)."""
        if keep is None:
            return evaluate_attack(
                model, Split(images, labels), attack, batch_size=batch_size, progress=False
            ).robust.to(device)
        if not keep.any():
            return keep.clone()
        broken = _broken(model, attack, images[keep], labels[keep], batch_size)
        return torch.zeros(n, dtype=torch.bool, device=device).masked_scatter(keep, ~broken)

    # by registered name: the core names the attacks it needs, never imports a plugin module
    pgd, apgd, square = (ATTACKS.get(name) for name in ("pgd", "apgd", "square"))
    adapted = adaptation.settings()

    base = (
        robust(pgd(eps=eps, norm=norm, steps=steps, seed=seed, **adapted))
        if white is None or not quick
        else white.to(device)
    )
    report.figures["pgd_accuracy" if white is None or not quick else "evaluated_accuracy"] = share(base)
    # a broken sample cannot inflate the figure, whatever its gradient: the default level looks for blind
    # gradients only where the white-box attack failed (on a normal model a few samples, not all of them)
    examined = base if quick else torch.ones(n, dtype=torch.bool, device=device)
    logits = _check_gradients(model, images[examined], labels[examined], n, report, batch_size, adaptation)
    _check_forward(model, images[examined] if examined.any() else images, logits, report, averaged=adaptation.eot > 1)
    if not quick:
        _check_eps_sweep(
            report, base, lambda f: robust(pgd(eps=eps * f, norm=norm, steps=steps, seed=seed, **adapted)), slack
        )

    large, _ = threat_model(norm, eps).whole_box_budget(tuple(images.shape[1:]))  # a budget reaching the whole box
    far = DEFAULT_UNBOUNDED_STEPS if quick else max(steps, 20)
    # what the ε-ball attack broke is broken in the whole box too (a verified example): only what it left
    # can show the whole-box attack stuck, so only that is attacked, and at the default level only when it
    # is enough to raise the flag (the figure is then left out: it was not measured)
    unbounded = None
    if not quick or share(base) > UNBOUNDED_LIMIT or not base.any():
        unbounded = share(robust(pgd(eps=large, norm=norm, steps=far, seed=seed, **adapted), keep=base))
        report.figures["pgd_accuracy_unbounded"] = unbounded
    if unbounded is not None and unbounded > UNBOUNDED_LIMIT:
        report.flags.append(
            Flag(
                "unbounded-attack-fails",
                f"PGD with ε covering the whole input box leaves accuracy at {unbounded:.3f} (expected ≈ 0; "
                "what the ε-ball attack broke counts as broken)",
                "gradients do not lead anywhere: look for non-differentiable or randomised layers; "
                "try -o bpda=true, -o eot=16, or the square attack",
            )
        )

    white_name, white_box = "the evaluated attack" if white is not None and quick else f"PGD-{steps}", base
    if not quick:
        strong = robust(pgd(eps=eps, norm=norm, steps=10 * steps, restarts=3, seed=seed, **adapted))
        report.figures["pgd_strong_accuracy"] = share(strong)
        drop = report.figures["pgd_accuracy"] - report.figures["pgd_strong_accuracy"]
        if drop > slack:
            report.flags.append(
                Flag(
                    "more-iterations-help",
                    f"PGD-{steps}: {report.figures['pgd_accuracy']:.3f}, PGD-{10 * steps}×3 restarts: "
                    f"{report.figures['pgd_strong_accuracy']:.3f}",
                    f"the weaker attack had not converged; report the ensemble (APGD + Square), not PGD-{steps}",
                )
            )
        # the white-box side is the best of three gradient attacks: PGD-CE alone has blind spots (a fixed
        # step, a saturating loss) that a black-box margin search can beat without any masking
        white_name, white_box = (
            "PGD and APGD (CE, DLR)",
            strong & robust(apgd(eps=eps, norm=norm, steps=10 * steps, seed=seed, **adapted)),
        )
        if num_classes(model, images) >= 3:  # DLR needs three logits
            white_box &= robust(apgd(eps=eps, norm=norm, steps=10 * steps, loss="dlr", seed=seed, **adapted))
    if threat_class(norm).name not in square.norms:  # no black-box search in this ball: no comparison to make
        return report
    # Square only attacks what the white box left: only those samples can show it beaten. The default level
    # probes at most DEFAULT_SQUARE_SAMPLES of them and scales what it breaks to the whole unbroken share.
    white_share = share(white_box)
    report.figures["white_box_accuracy"] = white_share
    if white_share <= slack:  # breaking all of it would stay within the tolerance: no flag can come
        return report
    queries = DEFAULT_SQUARE_QUERIES if quick else square_queries
    probed = white_box.clone()
    if quick:
        probed[probed.nonzero().squeeze(1)[DEFAULT_SQUARE_SAMPLES:]] = False
    patience = DEFAULT_SQUARE_PATIENCE if quick else 0
    black = robust(
        square(eps=eps, norm=norm, queries=queries, patience=patience, seed=seed, eot=adaptation.eot), keep=probed
    )
    broken_share = (~black & probed).float().sum().item() / max(probed.sum().item(), 1)  # of the probed unbroken ones
    only_black = broken_share * white_share
    report.figures["broken_only_by_square"] = only_black
    if only_black > slack:
        report.flags.append(
            Flag(
                "black-box-beats-white-box",
                f"Square ({queries} queries) broke {broken_share:.3f} of the samples that {white_name} "
                f"could not (white-box accuracy {white_share:.3f}, with Square {white_share - only_black:.3f})",
                "gradients mislead the white-box attacks: try -o bpda=true (non-differentiable "
                "layers) or -o eot=16 (randomness), and trust the ensemble's figure",
            )
        )
    return report


def _check_eps_sweep(report: CheckReport, base: Tensor, robust_at: Callable[[float], Tensor], slack: float) -> None:
    """A larger ball contains the smaller one: accuracy that rises with ε means the attack is failing."""
    sweep = {f: share(robust_at(f) if f != 1.0 else base) for f in EPS_FACTORS}
    report.figures.update({f"pgd_accuracy_eps_x{f:g}": a for f, a in sweep.items()})
    rises = [(a, b) for a, b in zip(EPS_FACTORS, EPS_FACTORS[1:], strict=False) if sweep[b] > sweep[a] + slack]
    if rises:
        a, b = rises[0]
        report.flags.append(
            Flag(
                "accuracy-rises-with-eps",
                f"PGD robust accuracy {sweep[a]:.3f} at {a:g}·ε but {sweep[b]:.3f} at {b:g}·ε",
                "a larger ball contains the smaller one, so the attack is failing: the loss "
                "surface is masked; try more steps, restarts, or -o bpda=true / -o eot=16",
            )
        )


def _broken(model: nn.Module, attack: Any, x: Tensor, y: Tensor, batch_size: int) -> Tensor:
    """Per sample, broken by ``attack``: its result as the attack base verified it (projected, a fresh pass).

    Only for samples robust under an earlier attack, so classified correctly: the engine's clean pass over
    them would be one more pass to learn nothing (on a few samples, a tenth of the probe's cost). Sample i
    draws from (seed, i) and randomised layers restart their streams, as in ``evaluate_attack``: the same
    outcome as through the engine.
    """
    reseed_randomness(model)
    index = torch.arange(len(y), device=x.device)
    chunks = zip(x.split(batch_size), y.split(batch_size), index.split(batch_size), strict=False)
    return torch.cat([attack(model, xb, yb, index=ib).success for xb, yb, ib in chunks])


def _input_gradients(
    model: nn.Module, images: Tensor, labels: Tensor, batch_size: int, loss: str, adaptation: Adaptation
) -> tuple[Tensor, Tensor]:
    """Logits (float32) and the ``loss``'s input gradient (flattened), taken as the attack takes them (BPDA;
    EOT: then both are means over the draws), batch by batch."""
    probe = ATTACKS.get("pgd")(eps=0.0, loss=loss, **adaptation.settings())
    logits, grads = [], []
    with eval_mode(model):
        for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True):
            try:
                _, grad, out = probe.loss_and_grad(model, x, y, None)
            except RuntimeError:  # the output does not depend on the input through autograd at all
                with torch.no_grad():
                    grad, out = torch.zeros_like(x), model(x)
            logits.append(out.float())
            grads.append(grad.flatten(1))
    return torch.cat(logits), torch.cat(grads)


def _check_forward(
    model: nn.Module, images: Tensor, first: Tensor | None, report: CheckReport, *, averaged: bool
) -> None:
    """A randomised forward pass makes every single-draw gradient (and verdict) a sample; an attack that
    averages over draws (``averaged``: EOT) has answered it, so the figure is kept and nothing is flagged.
    ``first`` is the margin pass's logits of ``images`` (None: no pass was made, one is made here); a second,
    separate pass on the first ``FORWARD_SAMPLES`` is compared with it (a layer drawing per sample changes
    them all, one drawing per batch or per call changes them between the calls)."""
    some = images[:FORWARD_SAMPLES]
    with torch.no_grad(), eval_mode(model):
        first = model(some).float() if first is None else first[:FORWARD_SAMPLES]
        second = model(some).float()
    differs = (first - second).abs().amax().item()
    report.figures["forward_max_difference"] = differs
    if differs > 1e-4 * max(first.abs().amax().item(), 1.0) and not averaged:
        changed = share(predict(model, some, draws=1) != first.argmax(1))  # one pass, no vote
        report.flags.append(
            Flag(
                "randomised-forward",
                f"two eval-mode passes on the same inputs differ by up to {differs:.3g} in the "
                f"logits ({changed:.3f} of predictions change on a third pass)",
                "attack the expectation: -o eot=16 (Expectation over Transformation), and "
                "report accuracy over several draws",
            )
        )


def _check_gradients(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    n: int,
    report: CheckReport,
    batch_size: int,
    adaptation: Adaptation,
) -> Tensor | None:
    """Zero or NaN input gradients leave gradient attacks blind; a saturated softmax blinds cross-entropy.
    ``images`` are those examined, of ``n``: the fractions are of ``n``. Returns their logits (None if none).

    The logit margin is differentiated first, since it does not saturate. Cross-entropy's input gradient
    is only exactly 0 when every other class's probability underflows (margins of ~100 in float32), which a
    normally trained model does not reach: there even the sign of PGD's step is lost. Its gradient w.r.t.
    the logits shows where that can happen (below ``_CE_UNDERFLOW``); only those samples are differentiated
    again, with cross-entropy, as the attack would (BPDA, EOT).
    """
    if len(labels) == 0:
        report.figures.update(
            {"gradient_nan_fraction": 0.0, "gradient_zero_fraction": 0.0, "ce_gradient_zero_fraction": 0.0}
        )
        return None
    logits, flat = _input_gradients(model, images, labels, batch_size, "margin", adaptation)
    nan = int((~torch.isfinite(flat)).any(1).sum()) / n
    zero = (flat == 0).all(1)
    with torch.enable_grad():
        z = logits.detach().requires_grad_(True)
        (at_logits,) = torch.autograd.grad(F.cross_entropy(z, labels, reduction="sum"), z)
    suspect = (at_logits.abs().amax(1) < _CE_UNDERFLOW) & ~zero
    saturated = torch.zeros_like(zero)
    if suspect.any():
        _, again = _input_gradients(model, images[suspect], labels[suspect], batch_size, "ce", adaptation)
        saturated[suspect] = (again == 0).all(1)
    saturated = int(saturated.sum()) / n
    zero = int(zero.sum()) / n
    report.figures.update(
        {"gradient_nan_fraction": nan, "gradient_zero_fraction": zero, "ce_gradient_zero_fraction": saturated}
    )
    if nan > 0:
        report.flags.append(
            Flag(
                "nan-gradients",
                f"{nan:.3f} of the samples have NaN or infinite input gradients",
                "a layer is not differentiable where it is used; try -o bpda=true",
            )
        )
    if zero > 0.05:
        report.flags.append(
            Flag(
                "zero-gradients",
                f"{zero:.3f} of the samples have an input gradient of exactly 0",
                "a quantising or thresholding layer (e.g. bit-depth reduction, JPEG) blocks "
                "gradients: try -o bpda=true (straight-through backward), or the square attack",
            )
        )
    if saturated > 0.05:
        report.flags.append(
            Flag(
                "saturated-softmax",
                f"{saturated:.3f} of the samples have a cross-entropy input gradient of exactly 0 "
                "(the softmax saturates; the logit margin still has a gradient)",
                "huge logits blind cross-entropy: try --loss margin (or dlr), or the ensemble",
            )
        )
    return logits
