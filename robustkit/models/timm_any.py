"""``timm:<name>``: any timm architecture, built for the data set, pretrained when ``weights`` says so."""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata

from torch import nn

from robustkit.data.base import DatasetInfo
from robustkit.errors import RobustkitError, UnknownNameError

PREFIX = "timm:"
PRETRAINED_ONLY = False
INSTALL = "pip install 'robustkit[zoo]'"


def check(arch: str) -> None:
    """An unknown architecture (or a missing extra) is one line, before anything else happens."""
    timm = _timm()
    base = arch.split(".")[0]  # "vit_tiny_patch16_224.augreg_in21k": architecture.pretrained tag
    if not timm.is_model(base):
        close = difflib.get_close_matches(base, timm.list_models(), n=3)
        hint = f"; did you mean {' or '.join(PREFIX + c for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown timm architecture '{base}'{hint}")


def build(arch: str, info: DatasetInfo, weights: str | None = None) -> tuple[nn.Module, tuple | None]:
    """timm's model for ``info``'s classes and channels; ``weights`` DEFAULT (timm's default tag) or a tag.

    Pretrained weights come through timm's own loading (the Hugging Face cache or its download), with
    timm adapting the head and the stem to the data set; their normalisation moves into the model.
    """
    timm = _timm()
    check(arch)
    shape = dict(num_classes=info.num_classes, in_chans=info.input_shape[0])
    if weights is None:
        return timm.create_model(arch, pretrained=False, **shape), None
    name = arch if weights.upper() == "DEFAULT" else f"{arch.split('.')[0]}.{weights}"
    try:
        net = timm.create_model(name, pretrained=True, **shape)
    except Exception as err:  # no internet, unknown tag, broken cache
        raise RobustkitError(
            f"could not load timm weights {name} ({type(err).__name__}: {str(err)[:200]}); with no "
            "internet, put them in the Hugging Face cache ($HF_HOME) or pass a state-dict file "
            "to --weights"
        ) from None
    cfg = net.pretrained_cfg
    channels = info.input_shape[0]
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    return net, (mean, std) if len(mean) == channels else None


def describe(arch: str, info: DatasetInfo, weights: str | None = None) -> str:
    tag = "" if weights is None or weights.upper() == "DEFAULT" else f".{weights}"
    return f"timm {arch.split('.')[0]}{tag} pretrained (timm {version()})"


def version() -> str:
    return importlib.metadata.version("timm")


def _timm():
    try:
        return importlib.import_module("timm")
    except ImportError as err:
        raise RobustkitError(f"timm models need the zoo extra ({err}): {INSTALL}") from None
