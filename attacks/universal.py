"""Universal adversarial perturbations: one δ, fitted once, that fools the model on most unseen images.

Two fitting methods in one plugin. ``sgd`` (the default) is stochastic projected gradient ascent on
δ over mini-batches (Shafahi et al., AAAI 2020): one forward+backward pass per image per pass, and on
Fashion-MNIST the stronger of the two. ``deepfool`` is the original algorithm (Moosavi-Dezfooli et
al., CVPR 2017): sweep the data, give every image that x + δ does not yet fool a minimal DeepFool
step, add it to δ and project onto the ε-ball, until the fitting set's fooling rate reaches the goal.
DeepFool runs on a whole mini-batch of not-yet-fooled images at once (peers loop over single images),
but costs up to ``deepfool_steps`` × (1 + ``candidates``) passes per image per pass.

Adding many DeepFool steps computed at one stale δ lets them undo each other, so the DeepFool
method sweeps in small batches (16): on a tiny model, batches of 8 fooled 70 % of the fitting set
where batches of 128 fooled 25 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from attacks.deepfool import minimal_perturbation
from robustkit.attack import LossGradientAttack, Perturbed
from robustkit.data_fitted import DataFittedAttack
from robustkit.errors import ConfigError
from robustkit.losses import is_success
from robustkit.predict import predict
from robustkit.progress import progress_bar
from robustkit.registry import ATTACKS
from robustkit.threats import L2, clip_to_box

METHODS = ("deepfool", "sgd")


@ATTACKS.register
@dataclass(frozen=True, kw_only=True)
class Universal(DataFittedAttack, LossGradientAttack):
    """Universal adversarial perturbation (Moosavi-Dezfooli et al. 2017; SGD variant: Shafahi et al. 2020).

    Threat model: one δ for every image, ‖δ‖ ≤ ε in L∞ or L2; each x + δ is clipped to [0, 1].
    Arguments: ``eps``; ``method`` (sgd | deepfool, the paper's); ``fooling_goal`` (stop once this
    fraction of the fitting images is fooled: 1 − δ in the paper, 0.8); ``max_passes`` over the
    fitting set (10); ``batch_size`` (16 for deepfool, 128 for sgd); DeepFool: ``deepfool_steps`` (10),
    ``overshoot`` (0.02), ``candidates`` (10), L2 DeepFool steps projected onto the ε-ball of the norm,
    as in the paper; SGD: ``step_size`` per mini-batch (default ε/10), ``loss``; ``target_class`` (push
    every image toward one class: success and the fooling rate then mean "classified as
    ``target_class``", and images of that class cannot succeed); ``perturbation`` (a fitted δ, C×H×W,
    to apply as is); ``seed`` (order of the sweeps); ``precision``.
    Use: ``delta = attack.fit(model, train_images)`` on one split, then ``attack.with_perturbation(delta)``
    on another (``prepared`` does both). Called without a fitted δ, the attack fits on the batch itself.
    ``extras["perturbation"]`` holds the δ applied.
    Cost of the defaults: at most 10 passes × (1 forward+backward per image + 1 forward for the
    fooling rate); ~8 s for 1000 Fashion-MNIST images (fitting, L∞ ε = 0.1) on smallcnn on 2 CPU
    cores, then one forward pass per image to apply δ; ``method="deepfool"`` took ~23 s per pass.

    Example::

        from attacks import Universal
        attack = Universal(eps=0.1)                          # method="deepfool" for the paper's
        delta = attack.fit(model, train_images)              # C×H×W
        result = attack.with_perturbation(delta)(model, x_test, y_test)
    """

    name: ClassVar[str] = "universal"

    method: str = "sgd"
    fooling_goal: float = 0.8
    max_passes: int = 10
    batch_size: int | None = None
    deepfool_steps: int = 10
    overshoot: float = 0.02
    candidates: int = 10
    step_size: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in METHODS:
            raise ConfigError(f"universal: unknown method '{self.method}' (choose from {', '.join(METHODS)})")
        if (
            not 0 < self.fooling_goal <= 1
            or self.max_passes < 1
            or (self.batch_size or 1) < 1
            or self.deepfool_steps < 1
        ):
            raise ConfigError(
                "universal needs 0 < fooling_goal ≤ 1, max_passes ≥ 1, batch_size ≥ 1, deepfool_steps ≥ 1"
            )
        if (self.step_size is not None and self.step_size <= 0) or self.overshoot < 0 or self.candidates < 1:
            raise ConfigError("universal needs step_size > 0, overshoot ≥ 0 and candidates ≥ 1")
        delta = self.perturbation
        if delta is not None:
            if not isinstance(delta, Tensor) or not delta.is_floating_point() or delta.ndim != 3:
                raise ConfigError("a universal perturbation is one floating-point image, C×H×W")
            if not self.threat.contains(torch.zeros_like(delta[None], dtype=torch.float32), delta[None].float()).all():
                raise ConfigError(
                    f"the universal perturbation has {self.norm} norm "
                    f"{self.threat.norm(delta[None]).item():.4g} > ε = {self.eps:.4g}"
                )

    @property
    def batch(self) -> int:
        return self.batch_size or (16 if self.method == "deepfool" else 128)

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size is not None else self.eps / 10

    def extra_metrics(self, model: nn.Module, images: Tensor) -> dict[str, float]:
        if self.perturbation is None:
            return {}
        delta = self.perturbation
        return {
            "fooling_rate": fooling_rate(model, images, delta, target_class=self.target_class),
            "perturbation_norm": self.threat.norm(delta[None].float()).item(),
        }

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, *, target, rng) -> Perturbed:
        delta = self.fitted_for(model, x, target)
        if delta.shape != x.shape[1:]:
            raise ConfigError(f"the universal perturbation is {tuple(delta.shape)}, the images {tuple(x.shape[1:])}")
        return Perturbed(x + delta.to(x.device, x.dtype), extras={"perturbation": delta})

    def _fit(self, model: nn.Module, x: Tensor, goal: int | None, generator: torch.Generator, progress: bool) -> Tensor:
        device = generator.device
        reference = predict(model, x)  # clean decisions: the labels a universal perturbation moves off
        delta = torch.zeros((1, *x.shape[1:]), dtype=torch.float32, device=device)
        update = self._deepfool_update if self.method == "deepfool" else self._sgd_update
        bar = progress_bar(
            total=self.max_passes * len(x),
            desc=f"universal {self.method} ε={self.eps:.4g}",
            unit="img",
            enabled=progress,
            leave=False,
        )
        for number in range(1, self.max_passes + 1):
            order = torch.randperm(len(x), generator=generator, device=device)
            seen = fooled = 0
            for index in order.split(self.batch):
                batch = x[index.to(x.device)].to(device)
                ref = reference[index.to(reference.device)].to(device)
                target = None if goal is None else torch.full_like(ref, goal)
                adv = clip_to_box(batch + delta).to(batch.dtype)
                delta, already = update(model, adv, ref, target, delta)
                seen, fooled = seen + len(index), fooled + already
                bar.update(len(index))  # within a pass: the share x + δ fooled, δ as it stood at each batch
                bar.set_postfix_str(f"pass {number}/{self.max_passes}, fooling ≈{fooled / seen:.3f}")
            rate = fooling_rate(model, x, delta[0], target_class=goal, reference=reference)
            bar.set_postfix_str(f"pass {number}/{self.max_passes}, fooling {rate:.3f}")
            if rate >= self.fooling_goal:
                break
        bar.close()
        return delta[0]

    def _deepfool_update(
        self, model, adv: Tensor, ref: Tensor, target: Tensor | None, delta: Tensor
    ) -> tuple[Tensor, int]:
        """The paper's inner loop: each unfooled image's minimal step is added to δ, and δ projected, in turn.

        Returns the new δ and how many of the batch x + δ fooled already (as ``_sgd_update``)."""
        steps, fooled, queries = minimal_perturbation(
            model,
            adv,
            ref,
            L2(1.0),
            self,
            target=target,
            steps=self.deepfool_steps,
            overshoot=self.overshoot,
            candidates=self.candidates,
        )
        useful = fooled & (queries > 1)  # moved by DeepFool and now fooled; already-fooled images cost one check
        for step in steps[useful].float():
            delta = self.threat.project(delta + step[None])
        return delta, int((fooled & (queries == 1)).sum())

    def _sgd_update(self, model, adv: Tensor, ref: Tensor, target: Tensor | None, delta: Tensor) -> tuple[Tensor, int]:
        """One projected steepest-ascent step on the summed loss of the images not yet fooled."""
        _, grad, logits = self.loss_and_grad(model, adv, ref, target)
        live = ~is_success(logits, ref, target)
        if not live.any():
            return delta, len(live)
        direction = (grad.float() * live.view(-1, *([1] * (grad.ndim - 1)))).sum(0, keepdim=True)
        return self.threat.project(delta + self.alpha * self.threat.normalize_grad(direction)), int((~live).sum())


@torch.no_grad()
def fooling_rate(
    model: nn.Module,
    images: Tensor,
    delta: Tensor,
    *,
    target_class: int | None = None,
    reference: Tensor | None = None,
    batch_size: int = 512,
) -> float:
    """Fraction of ``images`` whose prediction x + δ (clipped to [0, 1]) differs from the clean one
    (``reference``, computed if not given); with ``target_class``, the fraction of the images not
    already classified as that class that x + δ sends to it (NaN when there are none)."""
    if reference is None:
        reference = predict(model, images, batch_size=batch_size)
    hits = eligible = 0
    for lo in range(0, len(images), batch_size):
        chunk, ref = images[lo : lo + batch_size], reference[lo : lo + batch_size]
        pred = predict(model, clip_to_box(chunk + delta.to(chunk.device, chunk.dtype)), batch_size=batch_size)
        ref = ref.to(pred.device)
        counted = ref != target_class if target_class is not None else torch.ones_like(ref, dtype=torch.bool)
        moved = pred == target_class if target_class is not None else pred != ref
        hits, eligible = hits + int((moved & counted).sum()), eligible + int(counted.sum())
    return hits / eligible if eligible else float("nan")
