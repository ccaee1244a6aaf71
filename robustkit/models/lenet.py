"""LeNet-5 (LeCun et al. 1998), with ReLU and max-pooling as it is commonly trained today."""

from __future__ import annotations

from torch import nn

from robustkit.data.base import DatasetInfo
from robustkit.models.layers import flat_features
from robustkit.registry import MODELS


@MODELS.register
def lenet5(info: DatasetInfo) -> nn.Module:
    """LeNet-5: conv6-pool-conv16-pool-fc120-fc84 (62k parameters on 28×28)."""
    channels = info.input_shape[0]
    features = nn.Sequential(
        nn.Conv2d(channels, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    head = nn.Sequential(
        nn.Linear(flat_features(features, info.input_shape), 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, info.num_classes),
    )
    return nn.Sequential(features, head)


lenet5.train_recipe = {"epochs": 4, "lr": 0.05}
