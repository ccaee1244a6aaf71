"""``torchvision:<name>``: any torchvision classifier, optionally with its pretrained weights."""

from __future__ import annotations

import difflib

from torch import nn

from robustkit.data.base import DatasetInfo
from robustkit.errors import ConfigError, RobustkitError, UnknownNameError
from robustkit.models.layers import GreyToRGB

PREFIX = "torchvision:"
PRETRAINED_ONLY = False


def check(arch: str) -> None:
    """An unknown classifier is one line (with close names), before anything else happens."""
    import torchvision.models as tvm

    known = tvm.list_models(module=tvm)
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=3)
        hint = f"; did you mean {' or '.join(PREFIX + c for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown torchvision classifier '{arch}'{hint}")


def build(arch: str, info: DatasetInfo, weights: str | None = None) -> tuple[nn.Module, tuple | None]:
    """The model source's interface (see ``robustkit.models``).

    Pretrained weights expect the statistics they were trained with (their ``transforms()``: ImageNet's
    for torchvision's classifiers), whatever data set they are evaluated on, so those move into the
    model; on grey data (one channel, repeated to RGB after ``Normalize``) the data set's are kept.
    """
    net = torchvision_model(arch, info, weights)
    if weights is None or info.input_shape[0] != 3:
        return net, None
    preprocessing = weights_enum(arch, weights).transforms()
    return net, (tuple(preprocessing.mean), tuple(preprocessing.std))


def describe(arch: str, info: DatasetInfo, weights: str | None = None) -> str:
    import torchvision

    return f"torchvision {weights_enum(arch, weights or 'DEFAULT')} (torchvision {torchvision.__version__})"


def weights_enum(arch: str, weights: str):
    """torchvision's weights enum member for ``DEFAULT`` or a member's name (``IMAGENET1K_V2``)."""
    import torchvision.models as tvm

    enum = tvm.get_model_weights(arch)
    try:
        return enum.DEFAULT if weights.upper() == "DEFAULT" else enum[weights.split(".")[-1]]
    except KeyError:
        raise ConfigError(
            f"torchvision:{arch} has no weights '{weights}' (choose from {[w.name for w in enum]})"
        ) from None


def torchvision_model(arch: str, info: DatasetInfo, weights: str | None = None) -> nn.Module:
    """Build torchvision's ``arch`` for ``info``; ``weights`` is ``DEFAULT`` or a weights enum name.

    Pretrained weights come from torchvision's cache (``$TORCH_HOME``) or its download; with a
    different number of classes the last linear layer is replaced, to be fine-tuned.
    """
    import torchvision.models as tvm

    check(arch)
    channels = info.input_shape[0]
    if channels not in (1, 3):
        raise ConfigError(f"torchvision:{arch} takes 1 or 3 channels, the data set has {channels}")
    if weights is None:
        model = tvm.get_model(arch, num_classes=info.num_classes)
    else:
        model = _pretrained(tvm, arch, weights, info.num_classes)
    return nn.Sequential(GreyToRGB(), model) if channels == 1 else model


def _pretrained(tvm, arch: str, weights: str, num_classes: int) -> nn.Module:
    chosen = weights_enum(arch, weights)
    try:
        model = tvm.get_model(arch, weights=chosen)
    except Exception as err:  # URLError, hash mismatch, truncated file...
        raise RobustkitError(
            f"could not load {chosen} ({type(err).__name__}: {err}); with no internet, place "
            f"{chosen.url.rsplit('/', 1)[-1]} in $TORCH_HOME/hub/checkpoints"
        ) from None
    if len(chosen.meta["categories"]) != num_classes:
        _replace_last_linear(model, num_classes, arch)
    return model


def _replace_last_linear(model: nn.Module, num_classes: int, arch: str) -> None:
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"torchvision:{arch} has no linear head to resize to {num_classes} classes")
    name, old = linears[-1]
    parent = model.get_submodule(name.rpartition(".")[0])
    setattr(parent, name.rpartition(".")[2], nn.Linear(old.in_features, num_classes))
