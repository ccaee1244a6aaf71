"""One attack's outcome on one model, per sample, and the figures derived from it: what the engine
returns and what a stored row is turned back into (to draw its ε-curve)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from robustkit.errors import ConfigError
from robustkit.results.intervals import Interval, interval_figures, proportion_interval


def share(mask: Tensor) -> float:
    """The share of True in ``mask`` as count / n in Python floats: the exact fraction's rounding, where a
    float32 mean would store 275/300 as 0.9166666865348816. NaN for no samples."""
    n = mask.numel()
    return int(mask.sum()) / n if n else float("nan")


@dataclass
class Evaluation:
    """Per-sample outcomes of one attack on one model, and the figures derived from them."""

    clean_correct: Tensor  # bool N
    robust: Tensor  # bool N: correct, and no verified adversarial example found
    norms: Tensor  # float32 N: perturbation norm of verified adversarial examples, NaN elsewhere
    n_unverified: int = 0
    seconds: float = 0.0
    examples: dict[str, Tensor] = field(default_factory=dict)  # a few clean/adversarial pairs
    # float32 N: the attack's queries (model evaluations) spent on each broken sample, NaN elsewhere; None
    # where the attack counts none. Attacks that stop a sample at its first success (Square, the label-only
    # ones) report the count it was first broken at; for others it is an upper bound of that
    queries: Tensor | None = None

    @property
    def n(self) -> int:
        return len(self.clean_correct)

    @property
    def clean_accuracy(self) -> float:
        return share(self.clean_correct)

    @property
    def robust_accuracy(self) -> float:
        return share(self.robust)

    @property
    def attack_success_rate(self) -> float:
        """Broken among the samples attacked (those classified correctly)."""
        attacked = int(self.clean_correct.sum())
        return (attacked - int(self.robust.sum())) / attacked if attacked else float("nan")

    @property
    def mean_norm(self) -> float:
        return self.norms.nanmean().item()

    @property
    def median_norm(self) -> float:
        return self.norms.nanmedian().item()

    def robust_at(self, eps: float) -> Tensor:
        """Per sample at budget ``eps``: correct, and no verified example of norm ≤ ``eps``. From a
        minimum-norm attack's one run this holds at every ε (its ``norms`` are each sample's smallest
        verified norm); for a bounded attack only up to the ε it ran at."""
        return self.clean_correct & ~(self.norms <= eps)

    def curve(self, budgets: list[float] | Tensor) -> list[float]:
        """Robust accuracy at each budget of ``budgets`` (see ``robust_at``)."""
        return [share(self.robust_at(float(e))) for e in budgets]

    def curve_intervals(self, budgets: list[float] | Tensor) -> list[Interval]:
        """The 95 % interval of each point of ``curve``."""
        return [proportion_interval(int(self.robust_at(float(e)).sum()), self.n) for e in budgets]

    def robust_within(self, budget: float) -> Tensor:
        """Per sample had the attack stopped after ``budget`` queries: correct, and not broken by then (from
        one run, the query count at which each sample fell; requires ``queries``)."""
        if self.queries is None:
            raise ConfigError("this evaluation's attack counted no queries: no robust accuracy per query budget")
        return self.clean_correct & ~(self.queries <= budget)

    def query_curve(self, budgets: list[float]) -> list[float]:
        """Robust accuracy at each query budget of ``budgets`` (see ``robust_within``)."""
        return [share(self.robust_within(b)) for b in budgets]

    def query_curve_intervals(self, budgets: list[float]) -> list[Interval]:
        """The 95 % interval of each point of ``query_curve``."""
        return [proportion_interval(int(self.robust_within(b).sum()), self.n) for b in budgets]

    def counts(self) -> dict[str, tuple[int, int]]:
        """Each proportion as (count, out of): what its interval is computed from."""
        attacked, robust = int(self.clean_correct.sum()), int(self.robust.sum())
        return {
            "clean_accuracy": (attacked, self.n),
            "robust_accuracy": (robust, self.n),
            "attack_success_rate": (attacked - robust, attacked),
        }

    @property
    def images_per_second(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("nan")

    def metrics(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "attack_success_rate": self.attack_success_rate,
            **interval_figures(self.counts()),
            "mean_norm": self.mean_norm,
            "median_norm": self.median_norm,
            "n_unverified": self.n_unverified,
            "seconds": self.seconds,
            "images_per_second": self.images_per_second,
        }
