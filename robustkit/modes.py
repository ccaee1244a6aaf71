"""Put a model in eval mode for a while and give every module its own mode back afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside the block; each submodule's ``training`` flag restored in ``finally``.

    ``model.train(was_training)`` would not do: a model may deliberately keep some modules
    (say, frozen BatchNorm) in eval mode while the rest trains.
    """
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for module, training in saved:
            module.training = training
