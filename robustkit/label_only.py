"""Label-only (decision-based) attacks: the attack sees a label oracle, never the model or its scores.

A deployed model, or a defense that hides its scores (``defenses.OneHotOutput``), answers with the
predicted class only. ``LabelAttack`` enforces that: its ``perturb`` hands the subclass's ``search`` a
``LabelOracle`` that answers "adversarial or not" per row and counts every row as one query of its
sample, so a subclass cannot read logits and cannot spend a query it does not report.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from robustkit.attack import Attack, Perturbed
from robustkit.errors import ConfigError
from robustkit.losses import is_success
from robustkit.per_sample_random import SampleRandom
from robustkit.predict import predict, verdict_draws


class LabelOracle:
    """The model as a label-only attacker sees it: per image, fooled or not; every row is a counted query.

    ``fooled(images, rows)``: ``rows`` (int64, one per image) names the sample of the batch each image
    belongs to; the answer compares the predicted label (``predict``'s verdict, a majority vote for a
    randomised model) with that sample's label (or target). ``spent`` holds the queries per sample.
    """

    def __init__(self, model: nn.Module, y: Tensor, target: Tensor | None, *, batch_size: int = 1024) -> None:
        self._model, self._y, self._target, self._batch = model, y, target, batch_size
        self._vote = verdict_draws(model) > 1  # a randomised model's label is ``predict``'s majority vote
        self.spent = torch.zeros(len(y), dtype=torch.long, device=y.device)

    def fooled(self, images: Tensor, rows: Tensor) -> Tensor:
        """Bool per image: the model's label is not the sample's (or is its target)."""
        if len(images) == 0:
            return torch.zeros(0, dtype=torch.bool, device=self._y.device)
        if self._vote:
            labels = predict(self._model, images, batch_size=self._batch)
        else:  # the caller holds the model in eval mode (and the attack's autocast): a bare pass saves ``predict``'s set-up
            labels = torch.cat([self._model(chunk).argmax(1) for chunk in images.split(self._batch)])
        self.spent.index_add_(0, rows, torch.ones_like(rows))
        return is_success(labels, self._y[rows], None if self._target is None else self._target[rows])


@dataclass(frozen=True, kw_only=True)
class LabelAttack(Attack):
    """Base of label-only attacks: ``queries`` is the per-sample budget of label queries; subclasses
    implement ``search`` on a ``LabelOracle`` and never see the model."""

    queries: int = 1000

    access: ClassVar[str] = "label"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "perturb" in vars(cls):
            raise TypeError(f"{cls.__name__} overrides LabelAttack.perturb: implement search, which sees labels only")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.queries, bool) or not isinstance(self.queries, int) or self.queries < 1:
            raise ConfigError(f"{type(self).__name__}: queries must be a whole number ≥ 1, got {self.queries!r}")

    @torch.no_grad()
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, *, target: Tensor | None, rng: SampleRandom) -> Perturbed:
        oracle = LabelOracle(model, y, target)
        x_adv = self.search(oracle, x, rng)
        return Perturbed(x_adv, queries=oracle.spent * verdict_draws(model))

    @abstractmethod
    def search(self, oracle: LabelOracle, x: Tensor, rng: SampleRandom) -> Tensor:
        """Adversarial candidates for ``x`` (N×C×H×W), found by asking ``oracle`` at most about ``queries``
        times per sample; a sample whose example is within ε stops asking (its queries are then the count at
        which it was first broken)."""
