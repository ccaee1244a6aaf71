"""The base of data-fitted attacks: fit one perturbation on data, then replay it on unseen images.

A universal δ or patch is learned once (``fit``, or ``prepared`` inside an evaluation) and applied as
is to every later image; called without one, the attack fits on the batch it is given. The fitted
tensor is the ``perturbation`` setting, left out of ``settings()`` (records hold how it was fitted, not
the tensor) and saved beside the evaluation record through ``learned()``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Self

import torch
from torch import Tensor, nn

from robustkit.attack import Attack, check_pixels
from robustkit.data.base import IndexedSplit, Split
from robustkit.errors import ConfigError
from robustkit.losses import is_success
from robustkit.modes import eval_mode
from robustkit.predict import predict


@dataclass(frozen=True, kw_only=True)
class DataFittedAttack(Attack):
    """An attack that fits one perturbation on data (universal δ, universal patch): subclasses write ``_fit``
    and a ``perturb`` that applies ``fitted_for(...)``."""

    learns_from_data: ClassVar[bool] = True
    learned_name: ClassVar[str] = "perturbation"  # the name ``learned`` saves the fitted tensor under
    what: ClassVar[str] = "universal perturbation"  # what the fitted tensor is called in messages

    # push every image toward this class: success and the fooling rate then mean "classified as it"
    target_class: int | None = None
    perturbation: Tensor | None = field(default=None, compare=False, repr=False)  # fitted, applied as is

    def settings(self) -> dict[str, Any]:
        """The settings without the fitted tensor; ``target_class`` last, where the attacks have always listed it."""
        kept = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("target_class", "perturbation")}
        return {**kept, "target_class": self.target_class}

    def with_perturbation(self, fitted: Tensor) -> Self:
        """This attack applying the ``fitted`` perturbation."""
        return replace(self, perturbation=fitted.detach())

    def prepared(self, model: nn.Module, images: Tensor, *, progress: bool = False) -> Self:
        return self.with_perturbation(self.fit(model, images, progress=progress))

    def learned(self) -> dict[str, Tensor]:
        return {} if self.perturbation is None else {self.learned_name: self.perturbation}

    def verdict(self, model: nn.Module, x_adv: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """As every attack; with ``target_class`` (and no ``target``), success also means classified as that class."""
        prediction = predict(model, x_adv, batch_size=max(len(x_adv), 1))
        success = is_success(prediction, y, target)
        if target is None and self.target_class is not None:
            success &= prediction == self.target_class  # misclassified too, so y ≠ target_class
        return success

    def fit(
        self, model: nn.Module, images: Tensor | Split | Iterable, *, target: int | None = None, progress: bool = True
    ) -> Tensor:
        """Fit the perturbation (float32, on the model's device) on ``images``: a tensor, a split or a loader.

        Labels are not needed: an image counts as fooled when its prediction moves off the clean one
        (or, with ``target``/``target_class``, onto that class).
        """
        x = fitting_images(images)
        param = next(model.parameters(), None)
        device = param.device if param is not None else x.device
        generator = torch.Generator(device=device).manual_seed(self.seed)
        goal = target if target is not None else self.target_class
        with eval_mode(model), self._autocast(device):
            return self._fit(model, x, goal, generator, progress)

    def fitted_for(self, model: nn.Module, x: Tensor, target: Tensor | None) -> Tensor:
        """The fitted perturbation; without one, one fitted on the batch ``x`` itself (toward its one ``target``)."""
        if self.perturbation is not None:
            return self.perturbation
        goal = self.target_class
        if target is not None:
            if len(target.unique()) != 1:
                raise ConfigError(f"a {self.what} pushes toward one class: give one target for all")
            goal = int(target[0])
        return self._fit(model, x, goal, torch.Generator(device=x.device).manual_seed(self.seed), progress=False)

    @abstractmethod
    def _fit(self, model: nn.Module, x: Tensor, goal: int | None, generator: torch.Generator, progress: bool) -> Tensor:
        """The perturbation fitted on ``x`` (toward class ``goal`` if given), every draw from ``generator``."""


def fitting_images(images: Tensor | IndexedSplit | Iterable) -> Tensor:
    """The images a data-fitted attack (``fit``) learns from, as one N×C×H×W tensor in [0, 1]: from a tensor,
    a split (a streaming one is decoded whole: pass a subset) or an iterable of batches (tensors or (x, y)
    pairs); anything else is a one-line error."""
    if isinstance(images, IndexedSplit):
        return images.load().images
    if isinstance(images, Tensor):
        x = images
    else:
        batches = [b[0] if isinstance(b, (tuple, list)) else b for b in images]
        if not batches or not all(isinstance(b, Tensor) for b in batches):
            raise ConfigError("fit needs images: a tensor N×C×H×W, a Split, or a loader of image batches")
        x = torch.cat(batches)
    if not x.is_floating_point() or x.ndim != 4 or len(x) == 0:
        raise ConfigError(
            f"fit needs a non-empty floating-point tensor of images, N×C×H×W in [0, 1]; got "
            f"{x.dtype} of shape {tuple(x.shape)} (one channel: x.unsqueeze(1))"
        )
    check_pixels(x, "fitting images")
    return x.detach()
