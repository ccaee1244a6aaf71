"""The fooling evaluation: one image sought per class, each confirmed by the model afresh.

A threat model without clean images (``clean_images = False``) has no accuracy to measure: the
figure is the fooling rate, the share of classes for which the attack found an image the model gives
that class with probability ≥ the threshold. Every image counted passes the threat model's check
(box, reported class) and ``confirm_fooling``; the attack's own claim is never taken.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustkit.attack import Attack
from robustkit.errors import ConfigError
from robustkit.predict import num_classes
from robustkit.progress import progress_bar
from robustkit.results.intervals import interval_figures
from robustkit.results.outcome import share
from robustkit.threats.fooling import confirm_fooling


@dataclass
class FoolingReport:
    """Per class sought: the verified confidence reached, whether it passed, and the time spent on it.

    A class's seconds are its own: its share of the attack's steps (each step's time split among the
    classes it worked on) plus an even share of its batch's verification. They add up to
    ``total_seconds``, so the per-class column, the summary and the rate are one measurement.
    """

    classes: Tensor  # int64 K
    confidence: Tensor  # float32 K: the model's probability of the class on the image kept (fresh pass)
    passed: Tensor  # bool K: a verified fooling image
    seconds: Tensor  # float64 K: time spent on the class, whether or not it was fooled
    images: Tensor  # K×C×H×W, one per class
    threshold: float
    n_unverified: int = 0  # images the attack claimed that failed the check (should be 0)

    @property
    def total_seconds(self) -> float:
        return float(self.seconds.sum())

    @property
    def fooling_rate(self) -> float:
        """Share of the classes sought with a verified fooling image."""
        return share(self.passed)

    @property
    def seconds_per_class(self) -> float:
        """The mean of the per-class times (NaN when no class was sought)."""
        return float(self.seconds.mean()) if len(self.seconds) else float("nan")

    def metrics(self) -> dict[str, float | int]:
        """The keys of ``Evaluation.metrics`` over classes (robust: no verified image), plus the fooling figures."""
        fooled, sought = int(self.passed.sum()), len(self.classes)
        return {
            "n": sought,
            "robust_accuracy": share(~self.passed),
            "attack_success_rate": self.fooling_rate,
            **interval_figures(
                {
                    "clean_accuracy": None,
                    "robust_accuracy": (sought - fooled, sought),
                    "attack_success_rate": (fooled, sought),
                }
            ),
            "mean_norm": float("nan"),
            "median_norm": float("nan"),
            "n_unverified": self.n_unverified,
            "seconds": self.total_seconds,
            "images_per_second": len(self.classes) / max(self.total_seconds, 1e-12),
            "fooling_rate": self.fooling_rate,
            "seconds_per_class": self.seconds_per_class,
        }

    def extra(self) -> dict[str, list[float] | float]:
        """Per-class figures for a record's JSON (NaN as None)."""

        def plain(t: Tensor) -> list:
            return [None if v != v else round(v, 6) for v in t.tolist()]

        return {
            "classes": self.classes.tolist(),
            "confidence": plain(self.confidence),
            "class_seconds": plain(self.seconds),
            "seconds_per_class": self.seconds_per_class,
            "threshold": self.threshold,
        }


def evaluate_fooling(
    model: nn.Module,
    attack: Attack,
    image_shape: tuple[int, ...],
    classes: Tensor | list[int] | None = None,
    *,
    batch_size: int = 256,
    progress: bool = True,
) -> FoolingReport:
    """Seek one fooling image per class in ``classes`` (default: every class of the model), batched.

    Class c's random draws come from (seed, c), so its image is the same at any batch size. A class the
    model does not have is a one-line error.
    """
    if attack.threat.clean_images:
        raise ConfigError(f"{type(attack).__name__} attacks clean images; evaluate it with evaluate_attack")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    template = torch.full((1, *image_shape), 0.5, device=device)
    have = num_classes(model, template)
    classes = torch.arange(have) if classes is None else torch.as_tensor(classes).long().view(-1)
    bad = [c for c in classes.tolist() if not 0 <= c < have]
    if bad:
        raise ConfigError(f"fooling: class {bad[0]} is not one of this {have}-class model's classes 0…{have - 1}")
    parts: dict[str, list[Tensor]] = {"confidence": [], "passed": [], "seconds": [], "images": []}
    unverified = 0
    bar = progress_bar(
        total=len(classes),
        desc=f"{type(attack).__name__} {attack.threat.label()}",
        unit="class",
        enabled=progress,
        leave=False,
    )
    for chunk in classes.split(batch_size):
        sought, start = chunk.to(device), time.perf_counter()
        result = attack(model, template.expand(len(sought), *image_shape).clone(), sought, index=sought)
        confidence, confirmed = confirm_fooling(model, result.x_adv, sought, attack.eps)
        passed = confirmed & attack.threat.contains(result.x_adv, result.x_adv, result.evidence)
        passed &= result.evidence["target"].to(device) == sought
        unverified += int((result.success & ~passed).sum())
        seconds = _own_seconds(result.extras.get("seconds"), len(sought), time.perf_counter() - start)
        for key, value in (
            ("confidence", confidence),
            ("passed", passed),
            ("seconds", seconds),
            ("images", result.x_adv),
        ):
            parts[key].append(value.detach().cpu())
        bar.update(len(sought))
        bar.set_postfix(fooled=f"{torch.cat(parts['passed']).float().mean():.2f}")
    bar.close()
    merged = {k: torch.cat(v) for k, v in parts.items()}
    return FoolingReport(classes, threshold=attack.eps, n_unverified=unverified, **merged)


def _own_seconds(shares: Tensor | None, n: int, elapsed: float) -> Tensor:
    """Each class's time in a batch that took ``elapsed`` seconds: the attack's own per-image shares
    (``extras["seconds"]``; none: nothing of its own) plus an even share of the rest (verification)."""
    shares = torch.zeros(n, dtype=torch.float64) if shares is None else shares.detach().cpu().double()
    return shares + max(elapsed - float(shares.sum()), 0.0) / n
