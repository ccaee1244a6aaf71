"""What every data set yields: indexed splits (resident or streaming) of [0, 1] images, plus the metadata models need."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
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


class IndexedSplit(ABC):
    """One split known by its index: ``labels`` (int64 N) and where each item lives, without the pixels.

    Every consumer reads it the same way: ``subset`` chooses from the index, ``take`` keeps given
    positions, ``batches`` yields (images, labels) batches in [0, 1] on a device. ``Split`` holds its
    images resident in one tensor (small sets: the fast path); ``FileSplit`` decodes each item from its
    file when a batch needs it (``robustkit.data.files``), so memory does not grow with the data set.
    """

    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def take(self, index: Tensor) -> IndexedSplit:
        """The items at ``index`` (positions in this split), in that order; nothing is decoded."""

    @abstractmethod
    def batches(
        self, batch_size: int, *, device: torch.device | str | None = None, order: Tensor | None = None, seed: int = 0
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """(images float32 B×C×H×W in [0, 1], labels int64 B) over ``order`` (default: every item in
        order), on ``device``. ``seed`` keys per-item random preprocessing, where a split has any."""

    @abstractmethod
    def load(self) -> Split:
        """Every item decoded into one resident ``Split``: for small subsets that are read many times."""

    def subset(self, n_samples: int | None, seed: int = 0) -> IndexedSplit:
        """A fixed, seeded choice of ``n_samples`` (kept in data order) so every tool sees the same images.

        The choice depends only on the split's length and the seed, so resident and streaming splits
        of the same items choose the same ones, and only the chosen items are ever decoded.
        """
        chosen = self.choose(n_samples, seed)
        return self if chosen is None else self.take(chosen)

    def choose(self, n_samples: int | None, seed: int = 0) -> Tensor | None:
        """The positions ``subset`` keeps (None: every item), e.g. to pick per-sample outcomes alongside."""
        if n_samples is None or n_samples >= len(self):
            return None
        if n_samples <= 0:
            raise ConfigError(f"n_samples must be positive, got {n_samples}")
        generator = torch.Generator().manual_seed(seed)
        return torch.randperm(len(self), generator=generator)[:n_samples].sort().values


@dataclass(frozen=True)
class Split(IndexedSplit):
    """One split, resident in memory: ``images`` float32 N×C×H×W in [0, 1], ``labels`` int64 N."""

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.labels.ndim != 1 or len(self.images) != len(self.labels):
            raise DataError(
                f"split shapes do not match: images {tuple(self.images.shape)}, labels {tuple(self.labels.shape)}"
            )

    def take(self, index: Tensor) -> Split:
        return Split(self.images[index], self.labels[index])

    def batches(
        self, batch_size: int, *, device: torch.device | str | None = None, order: Tensor | None = None, seed: int = 0
    ) -> Iterator[tuple[Tensor, Tensor]]:
        device = device or self.images.device
        for lo in range(0, len(self) if order is None else len(order), batch_size):
            if order is None:
                x, y = self.images[lo : lo + batch_size], self.labels[lo : lo + batch_size]
            else:
                chunk = order[lo : lo + batch_size].to(self.images.device)
                x, y = self.images[chunk], self.labels[chunk]
            yield x.to(device), y.to(device)

    def load(self) -> Split:
        return self

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


def uint8_to_float(images: Tensor) -> Tensor:
    """uint8 N×C×H×W → float32 in [0, 1] (the one conversion every loader uses)."""
    return images.to(torch.float32).div_(255.0)


class ImageDataset(ABC):
    """A registered data set. Subclasses give ``info`` and load a split; splits are cached."""

    name: ClassVar[str]
    streams: ClassVar[bool] = False  # reads images from files as batches need them (else resident in memory)

    def __init__(self, *, data_dir: str | Path | None = None, download: bool = False) -> None:
        self.data_dir = Path(data_dir).expanduser() if data_dir else None
        self.download = download
        self._splits: dict[str, IndexedSplit] = {}

    @property
    @abstractmethod
    def info(self) -> DatasetInfo: ...

    @abstractmethod
    def load_split(self, split: SplitName) -> IndexedSplit: ...

    def files_read(self, split: SplitName) -> tuple[str, ...]:
        """Where a split's data came from (files, or the folder read), so a header and a record can name
        them: the given data folder unless a data set knows better."""
        return (str(self.data_dir),) if self.data_dir is not None else ()

    def split(self, split: SplitName) -> IndexedSplit:
        if split not in ("train", "test"):
            raise ConfigError(f"unknown split '{split}' (train or test)")
        if split not in self._splits:
            self._splits[split] = self.load_split(split)
        return self._splits[split]

    @property
    def train(self) -> IndexedSplit:
        return self.split("train")

    @property
    def test(self) -> IndexedSplit:
        return self.split("test")
