"""torchvision's VGG with batch norm; small inputs get the CIFAR head (global pool + one linear)."""

from __future__ import annotations

import torchvision
from torch import nn

from robustkit.data.base import DatasetInfo
from robustkit.models.layers import is_small
from robustkit.registry import MODELS


def _vgg(builder, info: DatasetInfo) -> nn.Module:
    channels = info.input_shape[0]
    model = builder(num_classes=info.num_classes)
    if channels != 3:
        model.features[0] = nn.Conv2d(channels, 64, 3, padding=1)
    if not is_small(info.input_shape):
        return model
    for layer in model.features:
        if isinstance(layer, nn.MaxPool2d):
            layer.ceil_mode = True  # 28 px survives five poolings: 28→14→7→4→2→1
    return nn.Sequential(model.features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, info.num_classes))


@MODELS.register
def vgg11(info: DatasetInfo) -> nn.Module:
    """VGG-11 with batch norm (Simonyan & Zisserman 2015)."""
    return _vgg(torchvision.models.vgg11_bn, info)


@MODELS.register
def vgg16(info: DatasetInfo) -> nn.Module:
    """VGG-16 with batch norm (Simonyan & Zisserman 2015)."""
    return _vgg(torchvision.models.vgg16_bn, info)


vgg11.train_recipe = {"epochs": 1}
vgg16.train_recipe = {"epochs": 1}
