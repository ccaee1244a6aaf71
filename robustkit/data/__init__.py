"""Data sets: registry entries that yield resident [0, 1] float tensors plus metadata."""

from __future__ import annotations

from typing import Any

from robustkit.data.base import DatasetInfo, ImageDataset, Split, uint8_to_float
from robustkit.registry import DATASETS

# Built-ins, listed explicitly: importing each module registers it.
from robustkit.data import fashion_mnist, imagefolder, synthetic, torchvision_sets  # noqa: E402,F401

DEFAULT_DATASET = "fashion-mnist"


def get_dataset(name: str = DEFAULT_DATASET, **kwargs: Any) -> ImageDataset:
    """Build a registered data set; ``None`` keyword values keep the data set's defaults."""
    return DATASETS.build(name, **kwargs)


__all__ = ["DEFAULT_DATASET", "DatasetInfo", "ImageDataset", "Split", "get_dataset", "uint8_to_float"]
