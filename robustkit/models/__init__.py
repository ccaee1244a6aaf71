"""Model registry: architectures built for a data set's shape, with normalisation inside the model.

Besides registered names, ``<source>:<name>`` names a model of another library. Each source is a
module with ``PREFIX``, ``PRETRAINED_ONLY`` (its weights come with it: never trained), ``check``,
``build`` (→ network and the input statistics it expects, or None for the data set's) and
``describe`` (the weights' provenance as one line).
"""

from __future__ import annotations

from collections import OrderedDict
from types import ModuleType
from typing import Any

import torch
from torch import nn

from robustkit.data.base import DatasetInfo, ImageDataset

# Built-ins, listed explicitly: importing each module registers its models.
from robustkit.models import lenet, preact, resnet, robustbench_zoo, smallcnn, timm_any, torchvision_any, vgg  # noqa: F401
from robustkit.models.layers import Normalize
from robustkit.models.torchvision_any import PREFIX as TORCHVISION_PREFIX
from robustkit.registry import MODELS

SOURCES: tuple[ModuleType, ...] = (torchvision_any, timm_any, robustbench_zoo)


def model_source(name: str) -> tuple[ModuleType, str] | None:
    """The source library of ``<prefix>:<name>`` and the name within it; None for a registered model."""
    for source in SOURCES:
        if name.startswith(source.PREFIX):
            return source, name[len(source.PREFIX) :]
    return None


def check_model_name(name: str) -> None:
    """Fails with one line (close names, or the missing extra) unless ``name`` can be built."""
    found = model_source(name)
    if found is None:
        MODELS.get(name)
    else:
        found[0].check(found[1])


def get_model(name: str, info: DatasetInfo | ImageDataset, *, seed: int | None = None, **kwargs: Any) -> nn.Sequential:
    """Build ``name`` for the data set's channels, size and classes; input is [0, 1] pixels.

    The result is ``Sequential(normalize=Normalize(mean, std), net=...)``, so attacks never see
    normalised inputs. ``torchvision:<arch>``, ``timm:<arch>`` and ``robustbench:<name>`` come from
    those libraries (``weights=`` names pretrained ones). ``None`` keyword values keep the builder's
    defaults. With ``seed`` the initial weights are reproducible, drawn without touching the
    caller's global RNG.
    """
    info = info.info if isinstance(info, ImageDataset) else info
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return get_model(name, info, **kwargs)
    found = model_source(name)
    stats = None
    if found is not None:
        net, stats = found[0].build(found[1], info, **{k: v for k, v in kwargs.items() if v is not None})
    else:
        net = MODELS.build(name, info, **kwargs)
    mean, std = stats or (info.mean, info.std)
    model = nn.Sequential(OrderedDict(normalize=Normalize(mean, std), net=net))
    model.robustkit_name = name  # records name the model by it, not "Sequential" (``model_name``)
    return model


def model_name(model: nn.Module) -> str:
    """The name a module was built under by ``get_model`` (``robustbench:Wong2020Fast``), else its class's."""
    return getattr(model, "robustkit_name", None) or type(model).__name__


def train_recipe(name: str) -> dict[str, Any]:
    """The training settings a model's builder recommends (e.g. fewer epochs for costly nets)."""
    if model_source(name) is not None:
        return {"epochs": 1}
    return dict(getattr(MODELS.get(name), "train_recipe", {}))


def model_revision(name: str) -> int:
    """Which revision of a registered architecture its builder makes (1 unless it changed since release)."""
    if model_source(name) is not None:
        return 1
    return int(getattr(MODELS.get(name), "revision", 1))


__all__ = [
    "MODELS",
    "Normalize",
    "SOURCES",
    "TORCHVISION_PREFIX",
    "check_model_name",
    "get_model",
    "model_name",
    "model_revision",
    "model_source",
    "train_recipe",
]
