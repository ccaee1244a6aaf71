"""What every data set yields: resident float tensors in [0, 1] plus the metadata models need."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import Tensor

from robustkit.errors import ConfigError, DataError

SplitName = Literal["train", "test"]


@dataclass(frozen=True)
class DatasetInfo:
    """Shape, classes and per-channel statistics: enough to build a model without the data."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]  # C, H, W
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip_invariant: bool = True  # may training flip images left-right? (not for digits)

    def __post_init__(self) -> None:
        channels = self.input_shape[0]
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"{self.name}: mean/std need one value per channel ({channels})")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> DatasetInfo:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class Split:
    """One split, resident in memory: ``images`` float32 N×C×H×W in [0, 1], ``labels`` int64 N."""

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.labels.ndim != 1 or len(self.images) != len(self.labels):
            raise DataError(
                f"split shapes do not match: images {tuple(self.images.shape)}, labels {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n_samples: int | None, seed: int = 0) -> Split:
        """A fixed, seeded choice of ``n_samples`` (kept in data order) so every tool sees the same images."""
        if n_samples is None or n_samples >= len(self):
            return self
        if n_samples <= 0:
            raise ConfigError(f"n_samples must be positive, got {n_samples}")
        generator = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(self), generator=generator)[:n_samples].sort().values
        return Split(self.images[index], self.labels[index])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


def uint8_to_float(images: Tensor) -> Tensor:
    """uint8 N×C×H×W → float32 in [0, 1] (the one conversion every loader uses)."""
    return images.to(torch.float32).div_(255.0)


class ImageDataset(ABC):
    """A registered data set. Subclasses give ``info`` and load a split; splits are cached."""

    name: ClassVar[str]

    def __init__(self, *, data_dir: str | Path | None = None, download: bool = False) -> None:
        self.data_dir = Path(data_dir).expanduser() if data_dir else None
        self.download = download
        self._splits: dict[str, Split] = {}

    @property
    @abstractmethod
    def info(self) -> DatasetInfo: ...

    @abstractmethod
    def load_split(self, split: SplitName) -> Split: ...

    def split(self, split: SplitName) -> Split:
        if split not in ("train", "test"):
            raise ConfigError(f"unknown split '{split}' (train or test)")
        if split not in self._splits:
            self._splits[split] = self.load_split(split)
        return self._splits[split]

    @property
    def train(self) -> Split:
        return self.split("train")

    @property
    def test(self) -> Split:
        return self.split("test")
