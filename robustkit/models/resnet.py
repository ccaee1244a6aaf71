"""torchvision's ResNet-18, with a 3×3 stem and no max-pool for small inputs."""

from __future__ import annotations

import torchvision
from torch import nn

from robustkit.data.base import DatasetInfo
from robustkit.models.layers import is_small
from robustkit.registry import MODELS


@MODELS.register
def resnet18(info: DatasetInfo) -> nn.Module:
    """ResNet-18 (He et al. 2016), 11M parameters; up to 64 px a 3×3 stem without max-pool.

    The stem keeps CIFAR-size inputs (32–64 px) at full resolution, the CIFAR ResNet-18 that
    RobustBench's and most papers' weights are; below 32 px (MNIST-size) it has stride 2: 28×28 maps
    at 64 channels cost 4× the compute of 14×14 ones for no gain in accuracy on 28 px images, and the
    first run (which trains this model) must end in minutes on a CPU.
    """
    channels = info.input_shape[0]
    model = torchvision.models.resnet18(num_classes=info.num_classes)
    if is_small(info.input_shape):
        stride = 2 if max(info.input_shape[1:]) < 32 else 1
        model.conv1 = nn.Conv2d(channels, 64, 3, stride=stride, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif channels != 3:
        model.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    return model


resnet18.train_recipe = {"epochs": 1}
resnet18.revision = 2  # 2: stride-2 stem below 32 px; a revision-1 checkpoint loads into it without error, wrongly
