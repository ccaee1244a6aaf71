"""Data sets: registry entries that yield indexed splits of [0, 1] images (resident or streaming) plus metadata."""

from __future__ import annotations

import inspect
from typing import Any

# Built-ins, listed explicitly: importing each module registers it.
from robustkit.data import fashion_mnist, imagefolder, imagenet, synthetic, torchvision_sets  # noqa: F401
from robustkit.data.base import DatasetInfo, ImageDataset, IndexedSplit, Split, uint8_to_float
from robustkit.data.files import FileSplit
from robustkit.errors import ConfigError
from robustkit.registry import DATASETS, DEFAULT_DATASET


def get_dataset(name: str = DEFAULT_DATASET, *, as_flags: bool = False, **kwargs: Any) -> ImageDataset:
    """Build a registered data set; ``None`` keyword values keep the data set's defaults.

    A setting the data set does not take is one line naming those that do (``as_flags``: spelled as
    the CLI's ``--image-size`` rather than a suite's ``image_size``).
    """
    check_dataset_settings(name, {k: v for k, v in kwargs.items() if v is not None}, as_flags=as_flags)
    return DATASETS.build(name, **kwargs)


def check_dataset_settings(name: str, settings: dict[str, Any], *, as_flags: bool = False) -> None:
    """Fails with one line when ``name`` does not take one of ``settings`` (e.g. ``image_size`` on fashion-mnist)."""
    taken = dataset_settings(name)
    refused = [key for key in settings if taken is not None and key not in taken]
    if not refused:
        return
    key = refused[0]
    spelled = "--" + key.replace("_", "-") if as_flags else key
    takers = [other for other in DATASETS.list() if key in (dataset_settings(other) or ())]
    where = f"applies to {' and '.join(takers)}" if takers else "is a setting no data set takes"
    raise ConfigError(
        f"{name} is {_nature(name, {k: v for k, v in settings.items() if k in taken})}: {spelled} {where}"
    )


def dataset_settings(name: str) -> set[str] | None:
    """The keyword settings a data set's constructor takes; None if it takes any (``**kwargs``)."""
    parameters = inspect.signature(DATASETS.get(name)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def _nature(name: str, settings: dict[str, Any]) -> str:
    """ "resident and 28×28": what makes a data set refuse a streaming or resizing setting."""
    kind = DATASETS.get(name)
    how = "streamed from files" if kind.streams else "resident"
    try:
        _, height, width = DATASETS.build(name, **settings).info.input_shape
    except Exception:  # a data set that must find its files to know its size: say what we know
        return how
    return f"{how} and {height}×{width}"


__all__ = [
    "DEFAULT_DATASET",
    "DatasetInfo",
    "FileSplit",
    "ImageDataset",
    "IndexedSplit",
    "Split",
    "check_dataset_settings",
    "dataset_settings",
    "get_dataset",
    "uint8_to_float",
]
