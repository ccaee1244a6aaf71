"""``evaluate_model``: the whole evaluation use case as one call (RobustBench's ``benchmark()`` in spirit).

Obtain the model (a name through the one resolver, or any ``nn.Module``), take the fixed seeded
subset, fit a data-fitted attack (or apply a saved δ), attack and verify, optionally run the
gradient-masking checks, and return a ``Report`` whose ``record`` is a results-store row. It is a
one-cell suite run through the runner's own ``evaluate_cell``, so ``robustkit evaluate`` (which only
parses and prints), the runner and Python users get the same figures and the same record.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustkit.training import distributed
from robustkit.attack import Attack
from robustkit.adaptation import Adaptation, check_level
from robustkit.evaluation.checks import CheckReport
from robustkit.data import dataset_settings, get_dataset
from robustkit.data.base import ImageDataset
from robustkit.device import resolve_device
from robustkit.errors import ConfigError
from robustkit.evaluation.engine import Evaluation
from robustkit.evaluation.cell import check_entry, entry_defense, evaluate_cell
from robustkit.evaluation.fooling import FoolingReport
from robustkit.models import check_model_name, model_name
from robustkit.modes import eval_mode
from robustkit.results.perturbation_file import load_perturbation
from robustkit.weights.checkpoint import file_sha256
from robustkit.registry import ATTACKS, DATASETS
from robustkit.weights.resolve import Provenance, resolve_model
from robustkit.suites.spec import AttackEntry, Cell, ModelEntry, Suite
from robustkit.threats import default_eps, parse_eps, threat_class

IN_MEMORY = "in-memory module"


@dataclass
class Report:
    """An evaluation's results: the figures, the record, and what was made along the way."""

    record: dict[str, Any]  # the results store's cell row (the schema of every --output and of the runner)
    outcome: Evaluation | FoolingReport  # per sample (per class for fooling threat models)
    figures: dict[str, Any]  # every figure, flat: metrics, fitting figures, fooling rate
    attack: Attack  # as evaluated (fitted where it learns from data)
    provenance: Provenance  # where the evaluated weights come from
    perturbation: dict[str, Tensor] = field(default_factory=dict)  # a fitted or applied δ / patch, by name
    checks: CheckReport | None = None
    check_record: dict[str, Any] | None = None  # the results store's checks row
    source: Provenance | None = None  # a transfer attack's source weights
    class_names: tuple[str, ...] = ()

    @property
    def clean_accuracy(self) -> float | None:
        """None where the threat model uses no clean images (fooling)."""
        return self.figures["clean_accuracy"]

    @property
    def robust_accuracy(self) -> float:
        return self.figures["robust_accuracy"]

    @property
    def examples(self) -> dict[str, Tensor]:
        """A few clean/adversarial pairs the attack broke (``clean``, ``adversarial``, ``label``, ``adversarial_prediction``)."""
        return self.outcome.examples if isinstance(self.outcome, Evaluation) else {}


def evaluate_model(
    model: str | nn.Module,
    dataset: str | ImageDataset = "fashion-mnist",
    attack: str = "pgd",
    *,
    eps: float | str | None = None,
    norm: str | None = None,
    n_samples: int = 1000,
    seed: int = 0,
    data_dir: str | Path | None = None,
    dataset_options: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    checkpoint: str | Path | None = None,
    defense: str = "none",
    defense_eps: float | str | None = None,
    attack_settings: dict[str, Any] | None = None,
    perturbation: str | Path | None = None,
    fit_samples: int = 1000,
    source: str | nn.Module | None = None,
    source_checkpoint: str | Path | None = None,
    source_defense: str = "none",
    checks: bool | str = "default",
    check_samples: int = 200,
    device: str | torch.device = "auto",
    batch_size: int = 256,
    no_train: bool = False,
    progress: bool = True,
    keep_examples: int = 8,
    suite: str = "evaluate",
    **keywords: Any,
) -> Report:
    """Attack ``model`` (a registered name, or any ``nn.Module`` taking [0, 1] pixels) on the test subset.

    ``eps`` is the budget (a number or ``"8/255"``; pixels for L0) [the field's usual one for the
    norm and data]; ``norm`` [the attack's]; ``attack_settings`` the attack's other settings.
    ``perturbation`` applies a saved δ (its ε, norm and fitting settings come with it). ``source``
    makes it a transfer attack crafted on that model. ``defense`` names the defense the cached
    checkpoint was trained with. A module is evaluated as given (in eval mode, its modes restored;
    moved only to an explicitly named ``device``); names are resolved (loaded, trained unless
    ``no_train``). ``suite`` names the one-cell suite the record belongs to (a leaderboard's name).
    ``checks``: the gradient-masking checks to run after the attack, ``default`` (cheap: on at most
    ``DEFAULT_SAMPLES`` samples; skipped where gradient attacks cannot step), ``full`` (or True) or
    ``none`` (or False); their flags go to ``Report.checks`` and the record's ``extra``.
    Any other keyword is, as on the CLI, an attack setting (``steps=20``) or a data-set option
    (``image_size=64``), checked against the attack's settings and the data set's options; the dicts
    ``attack_settings`` and ``dataset_options`` hold the same.
    """
    level = check_level(checks)
    if isinstance(model, str):
        check_model_name(model)  # an unknown name fails before anything else is said or done
    attack_settings, dataset_options = sort_keywords(keywords, attack, dataset, attack_settings, dataset_options)
    settings = {k: v for k, v in attack_settings.items() if v is not None}
    for reserved in ("eps", "norm", "seed", "perturbation"):
        if reserved in settings:
            raise ConfigError(f"attack_settings cannot hold '{reserved}': it is an argument of its own")
    if isinstance(source, str):
        check_model_name(source)
    elif source is None and source_checkpoint is None and source_defense != "none":
        raise ConfigError("--source-defense needs --source-model (or --source-checkpoint)")
    if level == "full" and norm is not None and not threat_class(norm).gradient_steps:
        raise ConfigError(f"--checks test gradient attacks, which cannot step in the {norm} threat model (use linf, l2 or l1)")
    options = {k: v for k, v in dataset_options.items() if v is not None}
    if isinstance(dataset, ImageDataset) and options:
        raise ConfigError(f"data-set options ({', '.join(options)}) apply to a data set given by name, not to a built one")
    data = dataset if isinstance(dataset, ImageDataset) else get_dataset(dataset, data_dir=data_dir, **options)
    delta, saved_with, given_sha = None, {}, None
    if perturbation is not None:
        delta, saved_with = load_perturbation(perturbation)
        given_sha = file_sha256(perturbation)
        settings.update(fitted_with(saved_with, Path(perturbation), attack, settings))
    norm = threat_class(norm or saved_with.get("norm") or ATTACKS.default(attack, "norm")).name
    eps = eps if eps is not None else saved_with.get("eps")  # a saved δ brings its own budget
    budget = (parse_eps(eps) if isinstance(eps, str) else eps) if eps is not None else default_eps(norm, data.info.input_shape[0])
    built = ATTACKS.build(attack, eps=budget, norm=norm, seed=seed, perturbation=delta, **settings)
    built.check_fits(data.info.input_shape)  # before a model is trained for a budget that cannot run
    if level == "full" and not threat_class(norm).gradient_steps:
        raise ConfigError(f"--checks test gradient attacks, which cannot step in the {norm} threat model (use linf, l2 or l1)")
    if not built.threat.clean_images and (source is not None or source_checkpoint is not None or delta is not None or level == "full"):
        raise ConfigError(f"the {norm} threat model has no clean images: no transfer, perturbation file or --checks")
    device = _device(device, model)
    distributed.init_from_env(device)  # under torchrun the ranks split the samples; rank 0 reports
    device = distributed.local_device(device)
    steps_in = threat_class(norm).gradient_steps  # a defense trains in a ball gradients can step in, else L∞
    trained = {"eps": parse_eps(str(defense_eps)) if defense_eps is not None else (budget if steps_in else None),
               "norm": norm if steps_in else "linf"}  # fmt: skip
    entry = _entry(model, defense, trained, checkpoint, weights)
    crafted = None
    if source is not None or source_checkpoint is not None:
        crafted = _entry(source if source is not None else model, source_defense, trained, source_checkpoint, None)
    described = {k: v for k, v in options.items() if k not in ("download", "workers")}  # what results depend on
    one = Suite(name=suite, dataset=data.info.name, models=(entry,), dataset_options=described, n_samples=n_samples,
                seed=seed, fit_samples=fit_samples, batch_size=batch_size, check_samples=check_samples,
                attacks=(AttackEntry(attack, norm, (budget,), settings),))  # fmt: skip
    cell = Cell(one, entry, one.attacks[0], budget, crafted, given_sha)
    if not threat_class(norm).gradient_steps or not built.threat.clean_images:
        level = "none"  # the default checks step with gradients: where they cannot, there is nothing to check
    subset = data.test.subset(n_samples, seed=seed)  # before any training: missing data is said first
    net, provenance = _obtain(model, entry, data, device, seed, no_train)
    pair = _obtain(source if source is not None else model, crafted, data, device, seed, no_train) if crafted else None
    with eval_mode(net):
        result = evaluate_cell(cell, net, data, subset, device=device, provenance=provenance, source=pair, attack=built,
                               progress=progress, keep_examples=keep_examples)  # fmt: skip
        report, check_row = None, None
        if level != "none":
            own = pair is None and delta is None and not result.attack.learns_from_data  # a per-sample figure of its own
            report, check_row = check_entry(one, entry, net, subset, norm, budget, provenance.sha256, level=level,
                                            adaptation=Adaptation.of(result.attack),
                                            white=result.outcome.robust if own else None)  # fmt: skip
            result.row["extra"].update(checks=report.summary(), check_details=report.to_dict())
    result.row["extra"]["data_files"] = list(data.files_read("test"))
    if pair is not None:
        result.row["extra"]["source_checkpoint"] = str(pair[1].path) if pair[1].path else pair[1].description
    if given_sha is not None:
        result.row["extra"].update(perturbation_file=str(perturbation), perturbation_sha256=given_sha)
    return Report(result.row, result.outcome, result.figures, result.attack, provenance, result.attack.learned(),
                  report, check_row, pair[1] if pair else None, tuple(data.info.class_names))  # fmt: skip


def sort_keywords(keywords: dict[str, Any], attack: str, dataset: str | ImageDataset, attack_settings: dict | None,
                  dataset_options: dict | None) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """``evaluate_model``'s other keywords added to the attack's settings or the data set's options.

    A key any data set takes goes to the data set (``get_dataset`` refuses it, in one line, where this
    one does not take it). An unknown key, or one also in the dicts, is a one-line error naming the
    keywords that are valid here.
    """
    settings = {k.replace("-", "_"): v for k, v in (attack_settings or {}).items()}
    data_options = dict(dataset_options or {})
    if not keywords:
        return settings, data_options
    takes = set(inspect.signature(ATTACKS.get(attack)).parameters) - _OWN
    opens = set().union(*(dataset_settings(name) or set() for name in DATASETS.list())) - _OWN
    for key, value in keywords.items():
        into, named = (settings, "attack_settings") if key in takes else (data_options, "dataset_options")
        if key not in takes | opens:
            here = sorted((dataset_settings(dataset) or set()) - _OWN) if isinstance(dataset, str) else []
            close = difflib.get_close_matches(key, [*takes, *here, *_OWN], n=1)
            name = dataset if isinstance(dataset, str) else "a data set given built"
            raise ConfigError(f"evaluate_model: '{key}' is not an argument, a setting of {attack} or an option of {name}"
                              + (f" (did you mean {close[0]}?)" if close else "") + f"; {attack}'s settings: "
                              f"{', '.join(sorted(takes))}; {name}'s options: {', '.join(here) or 'none'}")  # fmt: skip
        if key in into:
            raise ConfigError(f"evaluate_model: '{key}' is given twice, as a keyword and in {named}")
        into[key] = value
    return settings, data_options


_OWN = set(inspect.signature(evaluate_model).parameters) - {"keywords"}  # never an attack's or data set's keyword


def _device(device: str | torch.device, model: str | nn.Module) -> torch.device:
    """The named device; for a module and ``auto``, the module's own (it is not moved)."""
    if isinstance(model, nn.Module) and str(device) == "auto":
        param = next(model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")
    return resolve_device(str(device))


def _entry(model: str | nn.Module, defense: str, trained: dict, checkpoint, weights) -> ModelEntry:
    name = model if isinstance(model, str) else model_name(model)
    settings = {k: v for k, v in trained.items() if v is not None} if defense != "none" else {}
    return ModelEntry(name, defense, settings, Path(checkpoint) if checkpoint is not None else None,
                      weights=str(weights) if weights is not None else None)  # fmt: skip


def _obtain(model: str | nn.Module, entry: ModelEntry, data: ImageDataset, device: torch.device, seed: int,
            no_train: bool) -> tuple[nn.Module, Provenance]:  # fmt: skip
    """A name through the one resolver; a module as given (on an explicit device, under the entry's defense)."""
    defense = entry_defense(entry, data)
    if isinstance(model, str):
        found = resolve_model(model, data, device=device, defense=defense, checkpoint=entry.checkpoint,
                              weights=entry.weights, seed=seed, allow_train=not no_train)  # fmt: skip
        return found.model, found.provenance
    if entry.checkpoint is not None or entry.weights is not None:
        raise ConfigError("an nn.Module is evaluated as given: checkpoint and weights name a registered model's weights")
    model = model.to(device)
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    sha = digest.hexdigest()[:16]
    wrapped = defense.wrap(model) if defense is not None else model
    return wrapped, Provenance(f"{IN_MEMORY} {model_name(model)} sha256 {sha}", None, sha)


def fitted_with(saved_with: dict, path: Path, attack_name: str, given: dict) -> dict:
    """The settings a saved δ was fitted with, so the record of applying it names them; a conflicting
    setting is refused, since δ cannot change after fitting."""
    made_by = saved_with.get("attack", attack_name)
    if made_by not in ATTACKS or ATTACKS.get(made_by) is not ATTACKS.get(attack_name):
        raise ConfigError(f"{path} was made by --attack {made_by}, not {attack_name}")
    fitted = saved_with.get("settings", saved_with.get("attack_settings", "{}"))  # attack_settings: δ files written before one record schema
    try:
        fitted = json.loads(fitted) if isinstance(fitted, str) else fitted
    except json.JSONDecodeError:
        fitted = None
    if not isinstance(fitted, dict):
        raise ConfigError(f"{path}: its record's attack settings are not a JSON object")
    fitted = {k: v for k, v in fitted.items() if k != "seed"}  # the seed is the run's, not δ's
    for key, value in fitted.items():
        if given.get(key) is not None and given[key] != value:
            raise ConfigError(f"{path} was fitted with {key}={value!r}, not {given[key]!r}: drop that setting or fit anew")
    return fitted
