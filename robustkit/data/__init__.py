"""Data sets: registry entries that yield indexed splits of [0, 1] images (resident or streaming) plus metadata."""

from __future__ import annotations

from typing import Any

from robustkit.data.base import DatasetInfo, ImageDataset, IndexedSplit, Split, uint8_to_float
from robustkit.data.files import FileSplit
from robustkit.registry import DATASETS

# Built-ins, listed explicitly: importing each module registers it.
from robustkit.data import fashion_mnist, imagefolder, imagenet, synthetic, torchvision_sets  # noqa: E402,F401

DEFAULT_DATASET = "fashion-mnist"


def get_dataset(name: str = DEFAULT_DATASET, **kwargs: Any) -> ImageDataset:
    """Build a registered data set; ``None`` keyword values keep the data set's defaults."""
    return DATASETS.build(name, **kwargs)


__all__ = ["DEFAULT_DATASET", "DatasetInfo", "FileSplit", "ImageDataset", "IndexedSplit", "Split", "get_dataset", "uint8_to_float"]
