"""Model registry: architectures built for a data set's shape, with normalisation inside the model."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from robustkit.data.base import DatasetInfo, ImageDataset
from robustkit.models.layers import Normalize
from robustkit.models.torchvision_any import PREFIX as TORCHVISION_PREFIX
from robustkit.models.torchvision_any import torchvision_model
from robustkit.registry import MODELS

# Built-ins, listed explicitly: importing each module registers its models.
from robustkit.models import lenet, preact, resnet, smallcnn, vgg  # noqa: E402,F401


def get_model(name: str, info: DatasetInfo | ImageDataset, *, seed: int | None = None, **kwargs: Any) -> nn.Sequential:
    """Build ``name`` for the data set's channels, size and classes; input is [0, 1] pixels.

    The result is ``Sequential(normalize=Normalize(mean, std), net=...)``, so attacks never see
    normalised inputs. ``torchvision:<arch>`` builds any torchvision classifier (``weights=`` for
    pretrained ones). ``None`` keyword values keep the builder's defaults. With ``seed`` the
    initial weights are reproducible, drawn without touching the caller's global RNG.
    """
    info = info.info if isinstance(info, ImageDataset) else info
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return get_model(name, info, **kwargs)
    if name.startswith(TORCHVISION_PREFIX):
        net = torchvision_model(name[len(TORCHVISION_PREFIX):], info, **{k: v for k, v in kwargs.items() if v is not None})
    else:
        net = MODELS.build(name, info, **kwargs)
    return nn.Sequential(OrderedDict(normalize=Normalize(info.mean, info.std), net=net))


def train_recipe(name: str) -> dict[str, Any]:
    """The training settings a model's builder recommends (e.g. fewer epochs for costly nets)."""
    if name.startswith(TORCHVISION_PREFIX):
        return {"epochs": 1}
    return dict(getattr(MODELS.get(name), "train_recipe", {}))


__all__ = ["MODELS", "Normalize", "TORCHVISION_PREFIX", "get_model", "train_recipe"]
