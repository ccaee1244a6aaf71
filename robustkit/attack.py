"""The attack plugin interface: settings in a frozen dataclass, one public entry point.

An attack never holds a model. ``attack(model, x, y, *, target=None, index=None)`` runs the
subclass's ``perturb`` with the model in eval mode (every module's mode restored afterwards), then
projects the result onto the ε-ball and [0, 1] and re-runs the model to report success per sample.
Gradients are taken with ``torch.autograd.grad`` on the input only, so the model's parameters,
buffers, ``requires_grad`` flags and ``.grad`` are never touched, nor are the caller's tensors.

Randomness belongs to the sample: ``perturb`` gets a ``SampleRandom`` whose row i draws from
(seed, ``index[i]``) alone, so a sample's outcome does not depend on the batch it was attacked in.

Settings are honoured or refused: ``Attack`` has what every attack uses (ε, norm, seed, precision);
``GradientAttack`` adds what only gradient attacks can honour (the loss, EOT, BPDA). An attack that
cannot use a setting does not take it, so asking for it is an error, not a silent no-op.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, final

import torch
from torch import Tensor, nn

from robustkit.bpda import straight_through
from robustkit.errors import ConfigError
from robustkit.losses import LOSSES, attack_loss, confirmed_success, is_success
from robustkit.modes import eval_mode
from robustkit.per_sample_random import SampleRandom
from robustkit.predict import num_classes, predict
from robustkit.registry import ATTACKS
from robustkit.threats import DEFAULT_NORM, L2, Linf, ThreatModel, names, threat_class, threat_model

_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class AttackResult:
    """What an attack returns; every tensor has one entry per input sample."""

    x_adv: Tensor  # N×C×H×W, dtype and device of x, inside the ε-ball and [0, 1]
    # bool: misclassified (or, targeted, classified as the target) by a fresh forward pass. An image the
    # model already gets wrong counts as a success whatever x_adv is (the attack still perturbs it); the
    # evaluation engine attacks only correctly classified images, so robust accuracy never counts those.
    success: Tensor
    norms: Tensor  # float32: ‖x_adv − x‖ in the attack's norm
    queries: Tensor | None = None  # int64: model evaluations (forward or forward+backward) spent per sample
    extras: dict[str, Any] = field(default_factory=dict)  # attack-specific (e.g. the universal δ)
    # per-sample tensors the threat model's check needs beside x_adv (e.g. transform parameters)
    evidence: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Perturbed:
    """What ``perturb`` hands back to the base class."""

    x_adv: Tensor
    queries: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Tensor] = field(default_factory=dict)  # for ``ThreatModel.contains``


def keep_rows(mask: Tensor, *tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """The rows of each tensor where ``mask`` (bool, N) holds, None passing through: the one way an attack
    shrinks its set of still-active samples, so a retired sample stops costing passes."""
    return tuple(None if tensor is None else tensor[mask] for tensor in tensors)


@dataclass(frozen=True, kw_only=True)
class Attack(ABC):
    """Base of every attack: ε, norm, seed and precision are common to all."""

    eps: float
    norm: str = DEFAULT_NORM  # a threat model's name, one of ``norms``
    seed: int = 0  # with the sample's index, the source of every random draw
    precision: str = "fp32"  # fp32 | bf16 | fp16: autocast for the attack's own passes

    name: ClassVar[str] = ""
    norms: ClassVar[tuple[str, ...]] = names(Linf, L2)  # threat models the attack supports, default first
    learns_from_data: ClassVar[bool] = False  # True: ``prepared`` fits on training images first (universal)
    learned_images: ClassVar[bool] = False  # True: ``learned`` holds images in [0, 1] (a patch), saved as they look
    # what the attack reads of the model: "gradient" (input gradients), "score" (logits only, a black-box
    # search) or "label" (the predicted class only, ``robustkit.label_only``); boards say which figures needed what
    access: ClassVar[str] = "score"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass that overrides a final method (``__call__``) fails at once, not in a silent mis-report."""
        super().__init_subclass__(**kwargs)
        for name in vars(cls):
            if getattr(getattr(Attack, name, None), "__final__", False):
                raise TypeError(
                    f"{cls.__name__} overrides Attack.{name}, which is final: implement perturb "
                    "(or verdict, prepared, learned) instead"
                )

    def __post_init__(self) -> None:
        problem = self.refuses_norm(self.norm)
        if problem:  # the pairing first: another model's settings differ
            raise ConfigError(problem)
        _ = self.threat  # builds it: validates ε and the threat settings
        if self.precision not in _AUTOCAST:
            raise ConfigError(f"{type(self).__name__}: unknown precision '{self.precision}' (fp32, bf16, fp16)")
        _check_model_settings(self)

    @classmethod
    def refuses_norm(cls, norm: str, called: str | None = None) -> str | None:
        """Why the attack (``called``, default its class name) cannot work in threat model ``norm``, naming the
        attacks that can; None when it can."""
        norm = threat_class(norm).name  # an unknown name is its own one-line error
        if norm in cls.norms:
            return None
        able = [name for name in ATTACKS.list() if norm in getattr(ATTACKS.get(name), "norms", ())]
        instead = f" (attacks for {norm}: {', '.join(able)})" if able else ""
        return f"{called or cls.__name__} attacks {', '.join(cls.norms)}, not '{norm}'{instead}"

    @property
    def threat(self) -> ThreatModel:
        return threat_model(self.norm, self.eps, **self.threat_settings())

    @property
    def minimum_norm(self) -> bool:
        """True for attacks that seek each sample's smallest adversarial perturbation (FMN, Carlini–Wagner,
        FAB's min-norm mode). Their examples are not confined to the ε-ball: ``__call__`` keeps them in the
        box only (``ThreatModel.widened``) and reports each one's norm; the engine verifies each example at
        its own norm and counts it broken at every ε ≥ that norm, so one run gives the whole ε-curve
        (``eps`` is then the budget the headline figure is reported at)."""
        return False

    def bound(self, image_shape: tuple[int, ...]) -> ThreatModel:
        """The threat model the attack's output is clipped to and verified in: the ε-ball, or for a
        minimum-norm attack the whole box."""
        return self.threat.widened(tuple(image_shape)) if self.minimum_norm else self.threat

    def check_fits(self, image_shape: Sequence[int]) -> None:
        """A one-line error when the attack cannot run on images of ``image_shape`` (C×H×W or N×C×H×W) at
        its budget; checked before anything is said about that budget (e.g. that it covers the box)."""
        self.threat.check_fits(image_shape)

    def threat_settings(self) -> dict[str, Any]:
        """The attack's settings that belong to its threat model beyond ε (e.g. a spatial attack's translation)."""
        return {}

    def settings(self) -> dict[str, Any]:
        """The attack's settings as plain values, for records."""
        return asdict(self)

    @final
    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, *, target: Tensor | None = None, index: Tensor | None = None
    ) -> AttackResult:
        """Attack ``model`` on images ``x`` ∈ [0, 1] with labels ``y`` (or push them toward ``target``).

        ``index`` (int64 N, default 0…N−1) names each sample, e.g. its position in the evaluation set:
        sample i's random draws come from (seed, ``index[i]``), whatever else is in the batch.
        """
        x, y, target, index = _checked(model, x, y, target, index)
        rng = SampleRandom(self.seed, index)
        with eval_mode(model):
            with self._autocast(x.device):
                out = self.perturb(model, x, y, target=target, rng=rng)
            x_adv = self.bound(x.shape[1:]).clip(x, out.x_adv.detach().to(x.dtype))
            success = self.verdict(model, x_adv, y, target)
        size = self.threat.size(x, x_adv, out.evidence)
        return AttackResult(x_adv, success, size, out.queries, out.extras, out.evidence)

    def verdict(self, model: nn.Module, x_adv: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """Per sample, by a fresh forward pass: misclassified (or at ``target``). Attacks whose threat model
        has no clean image (fooling) judge success their own way."""
        return is_success(predict(model, x_adv, batch_size=max(len(x_adv), 1)), y, target)

    def prepared(self, model: nn.Module, images: Tensor, *, progress: bool = False) -> Attack:
        """The attack ready to run on unseen images: data-fitted attacks learn from ``images`` here.

        Evaluation calls this once with training images before attacking the test subset; attacks
        that learn nothing return themselves.
        """
        return self

    def learned(self) -> dict[str, Tensor]:
        """What ``prepared`` learned from data, to save beside the evaluation record (most attacks: nothing)."""
        return {}

    def extra_metrics(self, model: nn.Module, images: Tensor) -> dict[str, float]:
        """Attack-specific figures on the evaluation images, beyond robust accuracy (most attacks: none)."""
        return {}

    def gradient_free_members(self) -> tuple[str, ...]:
        """Names of the parts of this attack that read no gradient (itself, for a black-box search: ``access``
        score or label): on a model whose gradients are blind (zero, NaN, saturated), they bound the figure
        the gradient parts could not."""
        return () if self.access == "gradient" else (self.name,)

    @abstractmethod
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, *, target: Tensor | None, rng: SampleRandom) -> Perturbed:
        """Search for adversarial examples; the base class projects and re-checks what this returns."""

    def _autocast(self, device: torch.device) -> AbstractContextManager[Any]:
        dtype = _AUTOCAST[self.precision]
        return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


@dataclass(frozen=True, kw_only=True)
class GradientAttack(Attack):
    """An attack that reads input gradients: it honours ``eot`` and ``bpda`` (DeepFool, and below)."""

    eot: int = 1  # Expectation over Transformation: gradients (and logits) averaged over this many passes
    bpda: bool = False  # gradient passes approximate non-differentiable input transforms by the identity

    access: ClassVar[str] = "gradient"

    @contextmanager
    def differentiable(self) -> Iterator[None]:
        """Where gradient passes run: grad enabled (callers often sit in ``no_grad``), BPDA if asked."""
        with torch.enable_grad(), straight_through(True) if self.bpda else nullcontext():
            yield

    def mean_logits(self, model: nn.Module, x: Tensor) -> Tensor:
        """The logits averaged over ``eot`` passes, differentiable: its gradient is the EOT estimate."""
        if self.eot == 1:
            return model(x)
        return torch.stack([model(x) for _ in range(self.eot)]).mean(0)

    def gradient_free_members(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, kw_only=True)
class LossGradientAttack(GradientAttack):
    """A gradient attack that climbs a loss (FGSM, PGD, APGD, universal SGD): it also honours ``loss``."""

    loss: str = "ce"  # ce (cross-entropy) | margin (Carlini-Wagner logit margin) | dlr

    def loss_and_grad(
        self, model: nn.Module, x_adv: Tensor, y: Tensor, target: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-sample loss to maximise, its gradient w.r.t. the input only, and the logits.

        With ``eot`` > 1 the loss and gradient are means over that many passes, an estimate of the
        expected gradient of a randomised model (Athalye et al. 2018, EOT), and the logits are the mean
        too, so no early success rests on one lucky draw. With ``bpda`` the passes run inside ``straight_through``, so input transforms that
        round get the identity's gradient on the backward pass; the final verdict (``predict``) never
        runs inside it.
        """
        total_loss: Tensor | None = None
        total_grad: Tensor | None = None
        total_logits: Tensor | None = None
        with self.differentiable():
            for _ in range(self.eot):
                x = x_adv.detach().requires_grad_(True)
                logits = model(x)
                losses = attack_loss(logits.float(), y, target, self.loss)
                (grad,) = torch.autograd.grad(losses.sum(), x, allow_unused=True)
                grad = torch.zeros_like(x) if grad is None else grad  # an input the graph cut off has no gradient
                total_loss = losses.detach() if total_loss is None else total_loss + losses.detach()
                total_grad = grad.detach() if total_grad is None else total_grad + grad.detach()
                total_logits = logits.detach() if total_logits is None else total_logits + logits.detach()
        assert total_loss is not None and total_grad is not None and total_logits is not None  # eot ≥ 1 passes
        return total_loss / self.eot, total_grad / self.eot, total_logits / self.eot

    def score_iterate(
        self, model: nn.Module, x_adv: Tensor, y: Tensor, target: Tensor | None, *, final: bool
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Per-sample loss, success and input gradient of an iterate (patch, stAdv).

        The final iterate is only scored, in one pass without gradient (its gradient is None); the others
        take ``loss_and_grad``'s passes, their successes confirmed at the model's precision.
        """
        if final:
            with torch.no_grad():
                logits = model(x_adv)
            return attack_loss(logits.float(), y, target, self.loss), is_success(logits, y, target), None
        loss, grad, logits = self.loss_and_grad(model, x_adv, y, target)
        return loss, confirmed_success(model, x_adv, logits, y, target, self.precision), grad


def _check_model_settings(attack: Attack) -> None:
    """Validate ``loss``, ``eot`` and ``bpda`` on the attacks that take them (gradient and score-based)."""
    name, have = (
        type(attack).__name__,
        {f.name: getattr(attack, f.name) for f in fields(attack) if f.name in ("loss", "eot", "bpda")},
    )
    if "loss" in have and have["loss"] not in LOSSES:
        raise ConfigError(f"{name}: unknown loss '{have['loss']}' (choose from {', '.join(LOSSES)})")
    eot = have.get("eot")
    if "eot" in have and (isinstance(eot, bool) or not isinstance(eot, int) or eot < 1):
        raise ConfigError(f"{name}: eot must be a whole number of passes ≥ 1, got {eot!r}")
    if "bpda" in have and not isinstance(have["bpda"], bool):
        raise ConfigError(f"{name}: bpda must be true or false, got {have['bpda']!r}")


def check_pixels(x: Tensor, what: str) -> None:
    """Attacks work on [0, 1] pixels; anything else (NaN included) is a one-line error."""
    if x.numel() and not ((x >= 0) & (x <= 1)).all():  # NaN fails this too
        raise ConfigError(
            f"{what} must be pixels in [0, 1] (found {x.min().item():.3g}…{x.max().item():.3g}, or NaN); "
            "put normalisation inside the model"
        )


def _checked(
    model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, index: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """Validate inputs with one-line errors; return detached views (the caller's tensors are never written)."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise ConfigError("x must be a floating-point tensor of images, N×C×H×W")
    check_pixels(x, "x")
    if not isinstance(y, Tensor) or y.shape != x.shape[:1] or y.is_floating_point():
        raise ConfigError(f"y must be integer labels of shape ({len(x)},)")
    param = next(model.parameters(), None)
    if param is not None and param.device != x.device:
        raise ConfigError(f"model is on {param.device} but x is on {x.device}")
    if target is not None:
        if target.shape != y.shape or target.is_floating_point():
            raise ConfigError(f"target must be integer labels of shape ({len(x)},)")
        if (target == y.to(target.device)).any():
            raise ConfigError("target equals the true label for some samples; pick another class for them")
        target = target.detach().to(x.device)
    if len(x):
        classes = num_classes(model, x)
        check_labels(y, classes, "y")
        if target is not None:
            check_labels(target, classes, "target")
    if index is None:
        index = torch.arange(len(x), device=x.device)
    elif not isinstance(index, Tensor) or index.shape != y.shape or index.is_floating_point():
        raise ConfigError(f"index must be integer sample numbers of shape ({len(x)},)")
    return x.detach(), y.detach().to(x.device), target, index.detach().to(x.device)


def check_labels(labels: Tensor, classes: int, what: str) -> None:
    """Class labels must lie in [0, classes); torch would fail deep inside a loss with an IndexError."""
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        values = sorted(set(labels[bad].tolist()))
        shown = ", ".join(map(str, values[:5])) + (", …" if len(values) > 5 else "")
        raise ConfigError(f"{what} holds labels outside 0…{classes - 1} for this {classes}-class model: {shown}")
