"""torchvision's ResNet-18, with the usual CIFAR stem for small inputs."""

from __future__ import annotations

import torchvision
from torch import nn

from robustkit.data.base import DatasetInfo
from robustkit.models.layers import is_small
from robustkit.registry import MODELS


@MODELS.register
def resnet18(info: DatasetInfo) -> nn.Module:
    """ResNet-18 (He et al. 2016); up to 64 px a 3×3 stride-1 stem without max-pool (11M parameters)."""
    channels = info.input_shape[0]
    model = torchvision.models.resnet18(num_classes=info.num_classes)
    if is_small(info.input_shape):
        model.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif channels != 3:
        model.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    return model


resnet18.train_recipe = {"epochs": 1}
