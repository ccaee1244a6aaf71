"""The defense plugin interface: a defense is a training objective (plus, optionally, a guard).

It holds settings only, like an attack. ``fit`` runs robustkit's one training loop with the
defense's ``loss_fn`` and ``on_epoch_end``; the result is the same model, trained, and the settings
that go into its checkpoint record. A defense may also act at inference: ``wrap`` puts it around
the trained model (input transforms do only that, on standard-trained weights: ``trains_weights``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from robustkit.data.base import DatasetInfo, IndexedSplit, Split
from robustkit.threats import DEFAULT_NORM, ThreatModel, threat_model
from robustkit.training.loop import EpochHook, LossFn, TrainConfig, TrainResult, train_model


@dataclass(frozen=True, kw_only=True)
class Defense(ABC):
    """Base of every defense: the threat model it trains against."""

    eps: float
    norm: str = DEFAULT_NORM

    name: ClassVar[str] = ""
    # training settings this defense needs beyond the model's own recipe (e.g. more epochs)
    recipe: ClassVar[dict[str, Any]] = {}
    # False: the defense acts at inference only (``wrap``) on the undefended model's checkpoint
    trains_weights: ClassVar[bool] = True

    def __post_init__(self) -> None:
        threat_model(self.norm, self.eps)  # validates both

    @property
    def threat(self) -> ThreatModel:
        return threat_model(self.norm, self.eps)

    def settings(self) -> dict[str, Any]:
        return asdict(self)

    def tag(self) -> str:
        """What, besides the defense's name, tells its checkpoints apart in the cache."""
        return f"{self.norm}-eps{self.eps:.4g}"

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model as evaluated under this defense (the trained model itself, unless it acts at inference),
        in the model's own mode: an eval-mode model comes back in eval mode."""
        return model

    @abstractmethod
    def loss_fn(self) -> LossFn:
        """The training objective, called on every batch by the training loop."""

    def on_epoch_end(self, train: Split) -> EpochHook | None:
        """An optional guard run after every epoch; returning True stops training."""
        return None

    def held_out(self, train: IndexedSplit) -> tuple[IndexedSplit, Split | None]:
        """Split off data the guard needs (none by default): (trained on, held out, resident)."""
        return train, None

    def fit(
        self,
        model: nn.Module,
        train: IndexedSplit,
        *,
        epochs: int | None = None,
        config: TrainConfig | None = None,
        info: DatasetInfo | None = None,
        test: IndexedSplit | None = None,
        device: torch.device | str = "cpu",
        resume_path: Path | None = None,
        progress: bool = True,
    ) -> TrainResult:
        """Train ``model`` in place with this defense.

        ``config`` defaults to the defense's recipe over the general defaults; ``epochs`` overrides it.
        """
        config = config or TrainConfig(**self.recipe)
        config = replace(config, epochs=epochs) if epochs else config
        trained_on, guard = self.held_out(train)
        return train_model(
            model,
            trained_on,
            config,
            info=info,
            test=test,
            device=device,
            loss_fn=self.loss_fn(),
            on_epoch_end=self.on_epoch_end(guard) if guard is not None else None,
            resume_path=resume_path,
            resume_key={"defense": self.name, **self.settings()},
            progress=progress,
        )
