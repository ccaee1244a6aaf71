"""Small layers every model family shares."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with buffers, so attacks always work on [0, 1] pixels."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class GreyToRGB(nn.Module):
    """Repeats one grey channel three times, for RGB-only architectures on grey data."""

    def forward(self, x: Tensor) -> Tensor:
        return x.expand(-1, 3, -1, -1)


def flat_features(features: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Width of ``features``' flattened output for one input: sizes the first linear layer."""
    with torch.no_grad():
        return features(torch.zeros(1, *input_shape)).numel()


def is_small(input_shape: tuple[int, int, int]) -> bool:
    """Inputs up to 64 px get the CIFAR-style stem (3×3, stride 1, no max-pool)."""
    return max(input_shape[1:]) <= 64
