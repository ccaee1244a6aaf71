"""The cascade behind the ensembles (``ensemble``, ``autoattack``): attacks in turn over the still-robust samples."""

from __future__ import annotations

from abc import abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attacks.apgd import APGD
from robustkit.attack import Attack, GradientAttack, Perturbed
from robustkit.predict import num_classes


@dataclass(frozen=True, kw_only=True)
class Cascade(GradientAttack):
    """Members run in order, each only on the samples every earlier one left unbroken (AutoAttack's
    evaluation, Croce & Hein 2020); per sample the first verified example wins, so robust accuracy is the
    worst case over the members. ``extras["broken_by"]`` (int64 N) names, per sample, the member that
    broke it (its position in ``members()``) or −1; ``extras["members"]`` their names. Subclasses say
    which members, with which settings (``members``)."""

    @abstractmethod
    def members(self) -> list[tuple[str, Attack]]:
        """(name, attack) in the order they run."""

    def gradient_free_members(self) -> tuple[str, ...]:
        return tuple(name for name, attack in self.members() if attack.gradient_free_members())

    def _autocast(self, device: torch.device):
        return nullcontext()  # each member applies its own precision (and re-checks at full precision)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, *, target, rng) -> Perturbed:
        x_adv = x.clone()
        broken_by = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
        queries = torch.zeros(len(x), dtype=torch.long, device=x.device)
        members = self.members()
        for number, (_, attack) in enumerate(members):
            todo = (broken_by < 0).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            if _needs_more_classes(attack, target, model, x):
                continue
            result = attack(
                model, x[todo], y[todo], target=None if target is None else target[todo], index=rng.index[todo]
            )
            if result.queries is not None:
                queries[todo] += result.queries
            hit = result.success  # verified by the member's own fresh forward pass
            x_adv[todo[hit]] = result.x_adv[hit]
            broken_by[todo[hit]] = number
        return Perturbed(x_adv, queries=queries, extras={"broken_by": broken_by, "members": [m for m, _ in members]})


def _needs_more_classes(attack: Attack, target: Tensor | None, model: nn.Module, x: Tensor) -> bool:
    """The DLR loss is undefined below 3 classes (4 targeted, APGD-T): the cascade goes on without it."""
    if not isinstance(attack, APGD) or attack.loss != "dlr" or target is not None:
        return False
    return num_classes(model, x) < (4 if attack.targets > 0 else 3)
