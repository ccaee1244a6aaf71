"""Attack objectives, written so that an attack always *maximises* them.

Torch is imported where a loss is computed, so the CLI offers ``LOSSES`` as choices without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from robustkit.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor, nn

LOSSES = ("ce", "margin", "dlr")


def _margin(logits: Tensor, cls: Tensor) -> Tensor:
    """max_{j≠cls} z_j − z_cls: positive exactly when ``cls`` is not the prediction."""
    own = logits.gather(1, cls[:, None]).squeeze(1)
    others = logits.scatter(1, cls[:, None], float("-inf"))
    return others.amax(1) - own


def _dlr(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020): the margin divided by a spread of the top logits.

    Dividing by z_π1 − z_π3 (targeted: z_π1 − (z_π3 + z_π4)/2) makes the loss invariant to shifting
    and rescaling the logits, so a defense cannot hide behind large or saturated logits.
    """
    if logits.shape[1] < (3 if target is None else 4):
        raise ConfigError(
            f"the DLR loss needs at least {3 if target is None else 4} classes, the model has {logits.shape[1]}"
        )
    top = logits.sort(dim=1, descending=True).values
    if target is None:
        return _margin(logits, y) / (top[:, 0] - top[:, 2] + 1e-12)
    own = logits.gather(1, y[:, None]).squeeze(1)
    wanted = logits.gather(1, target[:, None]).squeeze(1)
    return (wanted - own) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def attack_loss(logits: Tensor, y: Tensor, target: Tensor | None, kind: str) -> Tensor:
    """Per-sample objective: untargeted pushes away from ``y``, targeted pulls toward ``target``.

    ``dlr`` needs at least 3 classes (4 when targeted).
    """
    if kind == "dlr":
        return _dlr(logits, y, target)
    if kind == "ce":
        from torch.nn import functional as F

        if target is None:
            return F.cross_entropy(logits, y, reduction="none")
        return -F.cross_entropy(logits, target, reduction="none")
    if target is None:
        return _margin(logits, y)
    return -_margin(logits, target)


def is_success(prediction_or_logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """Per-sample success from predicted labels (N) or logits (N×K)."""
    pred = prediction_or_logits.argmax(1) if prediction_or_logits.ndim == 2 else prediction_or_logits
    return pred == target if target is not None else pred != y


def confirmed_success(
    model: nn.Module, x_adv: Tensor, logits: Tensor, y: Tensor, target: Tensor | None, precision: str
) -> Tensor:
    """Per-sample success from an attack pass's logits; under reduced-precision autocast the claimed
    successes are re-checked at the model's own precision, so a sample is never retired early on a
    verdict the final verification would reverse."""
    hit = is_success(logits, y, target)
    if precision != "fp32" and hit.any():
        from robustkit.predict import predict

        claimed = hit.nonzero().squeeze(1)
        hit[claimed] = is_success(
            predict(model, x_adv[claimed]), y[claimed], None if target is None else target[claimed]
        )
    return hit


__all__ = ["LOSSES", "attack_loss", "confirmed_success", "is_success"]
