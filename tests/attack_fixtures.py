"""A tiny trained model and data, shared by the attack and evaluation tests."""

from __future__ import annotations

import functools

import torch
from torch import nn

from robustkit.data import get_dataset
from robustkit.models import get_model
from robustkit.training.loop import TrainConfig, train_model

DATA = get_dataset("synthetic", num_classes=4, channels=1, size=12, n_train=256, n_test=64, noise=0.3)


@functools.cache
def _trained_state() -> dict:
    model = get_model("lenet5", DATA.info, seed=0)
    config = TrainConfig(epochs=6, batch_size=32, lr=0.05, precision="fp32")
    train_model(model, DATA.train, config, info=DATA.info, progress=False)
    return {k: v.clone() for k, v in model.state_dict().items()}


def tiny_model() -> nn.Module:
    """A fresh copy each call, so one test cannot leak changes into another."""
    model = get_model("lenet5", DATA.info)
    model.load_state_dict(_trained_state())
    return model.eval()


def tiny_batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    return DATA.test.images[:n].clone(), DATA.test.labels[:n].clone()
