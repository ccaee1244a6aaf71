"""Pre-activation residual networks: PreAct-ResNet-18 and WideResNet-28-10 share one block.

The two families of the adversarial-training literature (Rice et al. 2020; Madry et al. 2018,
RobustBench) differ only in depth, widths and dropout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from robustkit.data.base import DatasetInfo
from robustkit.models.layers import is_small
from robustkit.registry import MODELS


class PreActBlock(nn.Module):
    """BN-ReLU-conv3×3-BN-ReLU-conv3×3 with an identity (or 1×1-conv) shortcut (He et al. 2016b)."""

    def __init__(self, in_width: int, width: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_width)
        self.conv1 = nn.Conv2d(in_width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        needs_projection = stride != 1 or in_width != width
        self.shortcut = nn.Conv2d(in_width, width, 1, stride, bias=False) if needs_projection else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class PreActResNet(nn.Module):
    """Stem, stages of ``PreActBlock``s, BN-ReLU, global average pool, linear head."""

    def __init__(
        self,
        info: DatasetInfo,
        blocks: Sequence[int],
        widths: Sequence[int],
        stem_width: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels = info.input_shape[0]
        if is_small(info.input_shape):
            self.stem = nn.Conv2d(channels, stem_width, 3, 1, 1, bias=False)
        else:
            self.stem = nn.Sequential(nn.Conv2d(channels, stem_width, 7, 2, 3, bias=False), nn.MaxPool2d(3, 2, 1))
        stages, in_width = [], stem_width
        for i, (count, width) in enumerate(zip(blocks, widths, strict=True)):
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                stages.append(PreActBlock(in_width, width, stride, dropout))
                in_width = width
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(in_width)
        self.fc = nn.Linear(in_width, info.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.stages(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@MODELS.register
def preact_resnet18(info: DatasetInfo) -> nn.Module:
    """PreAct-ResNet-18 (He et al. 2016b), the usual adversarial-training baseline (11M parameters)."""
    return PreActResNet(info, blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512), stem_width=64)


@MODELS.register
def wide_resnet28_10(info: DatasetInfo, dropout: float = 0.0) -> nn.Module:
    """WideResNet-28-10 (Zagoruyko & Komodakis 2016): 3 stages of 4 blocks, widths ×10 (36M parameters)."""
    return PreActResNet(info, blocks=(4, 4, 4), widths=(160, 320, 640), stem_width=16, dropout=dropout)


preact_resnet18.train_recipe = {"epochs": 1}
wide_resnet28_10.train_recipe = {"epochs": 1}
