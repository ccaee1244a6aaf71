"""The 2-conv/2-fc network of the MNIST adversarial-training literature (Madry et al. 2018)."""

from __future__ import annotations

from torch import nn

from robustkit.data.base import DatasetInfo
from robustkit.models.layers import flat_features
from robustkit.registry import MODELS


@MODELS.register
def smallcnn(info: DatasetInfo) -> nn.Module:
    """conv32(5×5)-pool-conv64(5×5)-pool-fc1024 (3.3M parameters on 28×28)."""
    channels = info.input_shape[0]
    features = nn.Sequential(
        nn.Conv2d(channels, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    head = nn.Sequential(
        nn.Linear(flat_features(features, info.input_shape), 1024), nn.ReLU(), nn.Linear(1024, info.num_classes)
    )
    return nn.Sequential(features, head)


smallcnn.train_recipe = {"epochs": 3}
