"""``robustbench:[<threat model>/]<name>``: RobustBench's model zoo, through the ``robustbench`` package.

Zoo models take [0, 1] pixels and normalise inside themselves (RobustBench's convention), so they
get an identity ``Normalize``. Checkpoints live in RobustBench's own layout under
``$ROBUSTKIT_HOME/robustbench`` (``<dataset>/<threat model>/<name>.pt``): a file placed there is
loaded and nothing is downloaded.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import sys
from pathlib import Path
from types import ModuleType

from torch import nn

from robustkit import paths
from robustkit.data.base import DatasetInfo
from robustkit.errors import ConfigError, RobustkitError, UnknownNameError

PREFIX = "robustbench:"
PRETRAINED_ONLY = True  # the zoo's weights are the model: nothing to train
INSTALL = "pip install 'robustkit[zoo]'"
THREAT_MODELS = ("Linf", "L2", "corruptions")


def model_dir() -> Path:
    return paths.home() / "robustbench"


def split_name(arch: str) -> tuple[str, str]:
    """``L2/Name`` → (``L2``, ``Name``); no threat model means L∞, the zoo's main board."""
    threat, _, name = arch.rpartition("/")
    threat = threat or "Linf"
    canon = {t.lower(): t for t in THREAT_MODELS}
    if threat.lower() not in canon:
        raise ConfigError(f"robustbench:{arch}: threat model '{threat}' is not one of {', '.join(THREAT_MODELS)}")
    return canon[threat.lower()], name


def check(arch: str) -> None:
    """Fails (one line) when the extra is missing or the name is malformed; the zoo name is checked per data set."""
    split_name(arch)
    _robustbench()


def build(arch: str, info: DatasetInfo, weights: str | None = None) -> tuple[nn.Module, tuple | None]:
    if weights is not None:
        raise ConfigError(
            f"robustbench:{arch} brings the zoo's weights; to use your own file, place it at "
            f"{checkpoint_file(arch, info)}"
        )
    threat, name = split_name(arch)
    _zoo(threat, name, info)  # an unknown name fails here, with close matches, before any download
    utils = importlib.import_module("robustbench.utils")
    try:
        net = utils.load_model(model_name=name, dataset=info.name, threat_model=threat, model_dir=str(model_dir()))
    except Exception as err:  # gdown/HTTP errors offline, a truncated file, a state dict that does not fit
        where = checkpoint_file(arch, info)
        raise RobustkitError(
            f"could not load robustbench:{arch} ({type(err).__name__}: {str(err)[:200]}); with no "
            f"internet, place its checkpoint at {where}"
        ) from None
    return net, ((0.0,) * info.input_shape[0], (1.0,) * info.input_shape[0])


def describe(arch: str, info: DatasetInfo, weights: str | None = None) -> str:
    threat, name = split_name(arch)
    return f"robustbench {name} {info.name}/{threat} (robustbench {version()})"


def checkpoint_file(arch: str, info: DatasetInfo) -> Path:
    threat, name = split_name(arch)
    return model_dir() / info.name / threat / f"{name}.pt"


def version() -> str:
    return importlib.metadata.version("robustbench")


def _zoo(threat: str, name: str, info: DatasetInfo) -> dict:
    """The zoo's entry for ``name``; an unknown name is one line with close matches."""
    _robustbench()
    enums = importlib.import_module("robustbench.model_zoo.enums")
    model_dicts = importlib.import_module("robustbench.model_zoo").model_dicts
    datasets = [d.value for d in enums.BenchmarkDataset]
    if info.name not in datasets:
        raise ConfigError(f"robustbench models are for {', '.join(datasets)}, not {info.name}")
    known = model_dicts[enums.BenchmarkDataset(info.name)].get(enums.ThreatModel(threat), {})
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UnknownNameError(f"robustbench has no {info.name} {threat} model '{name}'{hint}")
    return known[name]


def _robustbench() -> ModuleType:
    """Import robustbench, or say how to install it.

    The PyPI releases (1.1, 1.1.1) import ``autoattack`` but depend on ``pyautoattack``, which installs
    the same code under that name; the alias makes them importable (a GitHub install has the real one).
    """
    try:
        importlib.import_module("autoattack")
    except ImportError:
        try:
            alias = importlib.import_module("pyautoattack")
            sys.modules.setdefault("autoattack", alias)
            sys.modules.setdefault("autoattack.state", importlib.import_module("pyautoattack.state"))
        except ImportError:
            pass
    try:
        return importlib.import_module("robustbench")
    except ImportError as err:
        raise RobustkitError(f"robustbench models need the zoo extra ({err}): {INSTALL}") from None
