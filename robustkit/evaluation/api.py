"""``evaluate_model``: the whole evaluation use case as one call (RobustBench's ``benchmark()`` in spirit).

Obtain the model (a name through the one resolver, or any ``nn.Module``), take the fixed seeded
subset, fit a data-fitted attack (or apply a saved δ), attack and verify, optionally run the
gradient-masking checks, and return a ``Report`` whose ``record`` is a results-store row. It is a
one-cell suite run through the runner's own ``evaluate_cell``, so ``robustkit evaluate`` (which only
parses and prints), the runner and Python users get the same figures and the same record.
"""

from __future__ import annotations

import difflib
import inspect
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustkit.adaptation import Adaptation, check_level
from robustkit.attack import Attack
from robustkit.data import dataset_settings, get_dataset
from robustkit.data.base import ImageDataset, IndexedSplit
from robustkit.device import resolve_device
from robustkit.errors import ConfigError
from robustkit.evaluation.cell import CellResult, check_entry, entry_defense, evaluate_cell
from robustkit.evaluation.checks import CheckReport
from robustkit.evaluation.engine import Evaluation
from robustkit.evaluation.fooling import FoolingReport
from robustkit.models import check_model_name, model_name
from robustkit.modes import eval_mode
from robustkit.registry import ATTACKS, DATASETS
from robustkit.results.intervals import PROPORTIONS, Interval, row_interval
from robustkit.results.perturbation_file import load_perturbation
from robustkit.suites.spec import AttackEntry, Cell, ModelEntry, Suite
from robustkit.threats import L1, L2, Linf, default_eps, parse_eps, threat_class
from robustkit.training import distributed
from robustkit.weights.checkpoint import file_sha256, weights_sha256
from robustkit.weights.resolve import Provenance, resolve_model

IN_MEMORY = "in-memory module"


@dataclass
class Report:
    """An evaluation's results: the figures, the record, and what was made along the way."""

    record: dict[str, Any]  # the results store's cell row (the schema of every --output and of the runner)
    outcome: Evaluation | FoolingReport  # per sample (per class for fooling threat models)
    figures: dict[str, Any]  # every figure, flat: metrics with their 95 % intervals, fitting figures, fooling rate
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

    def interval(self, figure: str = "robust_accuracy") -> Interval:
        """The 95 % interval (Clopper–Pearson, from the counts) of ``clean_accuracy``, ``robust_accuracy`` or
        ``attack_success_rate``; ``figures`` and ``record`` hold it as ``{figure}_low`` and ``{figure}_high``."""
        if figure not in PROPORTIONS:
            raise ConfigError(f"no interval for '{figure}': the figures with one are {', '.join(PROPORTIONS)}")
        return row_interval(self.figures, figure)

    @property
    def examples(self) -> dict[str, Tensor]:
        """A few clean/adversarial pairs the attack broke (``clean``, ``adversarial``, ``label``, ``adversarial_prediction``)."""
        return self.outcome.examples if isinstance(self.outcome, Evaluation) else {}


@dataclass(frozen=True)
class ModelOptions:
    """Which weights of the model are evaluated: a name's are loaded (or trained); a module's are its own."""

    weights: str | Path | None = None  # a state-dict file or a model library's weights name; trains nothing
    checkpoint: str | Path | None = None  # [the cached checkpoint; trained if missing]
    defense: str = "none"  # the defense the cached checkpoint was trained with
    defense_eps: float | str | None = None  # ε it was trained at [the evaluation's, where gradients can step]
    no_train: bool = False  # refuse to train a missing checkpoint


@dataclass(frozen=True)
class CraftOptions:
    """Where the adversarial examples come from other than the attack on the model itself."""

    source: str | nn.Module | None = None  # a transfer attack crafts on this model, scores on the model
    source_checkpoint: str | Path | None = None
    source_defense: str = "none"
    perturbation: str | Path | None = None  # a saved δ applied (its ε, norm and fitting settings come with it)
    fit_samples: int = 1000  # training images a data-fitted attack (universal) learns from


@dataclass(frozen=True)
class RunOptions:
    """How the run goes and what it keeps; of these only ``seed`` and ``checks`` change the figures."""

    seed: int = 0
    device: str | torch.device = "auto"  # for a module, "auto" is its own device
    batch_size: int = 256
    data_dir: str | Path | None = None
    checks: bool | str = "default"  # default (cheap), full (or True), none (or False)
    check_samples: int = 200
    progress: bool = True
    keep_examples: int = 8
    suite: str = "evaluate"  # the one-cell suite the record belongs to (a leaderboard's name)


OPTION_CLASSES = (ModelOptions, CraftOptions, RunOptions)


def evaluate_model(
    model: str | nn.Module,
    dataset: str | ImageDataset = "fashion-mnist",
    attack: str = "pgd",
    *,
    norm: str | None = None,
    eps: float | str | None = None,
    n_samples: int = 1000,
    attack_settings: dict[str, Any] | None = None,
    dataset_options: dict[str, Any] | None = None,
    model_options: ModelOptions | None = None,
    craft: CraftOptions | None = None,
    run: RunOptions | None = None,
    **keywords: Any,
) -> Report:
    """Attack ``model`` (a registered name, or any ``nn.Module`` taking [0, 1] pixels) on the test subset.

    ``eps`` is the budget (a number or ``"8/255"``; pixels for L0) [the field's usual one for the
    norm and data]; ``norm`` [the attack's]. A module is evaluated as given (in eval mode, its modes
    restored; moved only to an explicitly named ``device``); names are resolved through ``model_options``.
    Any other keyword is, as on the CLI, a field of one of the option objects (``device="cuda"``,
    ``checks="none"``, set over the object given), an attack setting (``steps=20``) or a data-set option
    (``image_size=64``); the dicts ``attack_settings`` and ``dataset_options`` hold the same as the last two.
    """
    chosen = _options(keywords, model_options or ModelOptions(), craft or CraftOptions(), run or RunOptions())
    weights, crafting, running = chosen
    level = check_level(running.checks)
    if isinstance(model, str):
        check_model_name(model)  # an unknown name fails before anything else is said or done
    settings, options = _attack_and_data(keywords, attack, dataset, attack_settings, dataset_options)
    _refuse_early(crafting, level, norm)
    data = _open(dataset, options, running.data_dir)
    built, settings, delta, given_sha, norm, budget = _build(
        attack, data, norm, eps, settings, crafting.perturbation, running.seed
    )
    if level == "full":
        _refuse_full_checks(norm)
    if not built.threat.clean_images and (
        crafting.source is not None or crafting.source_checkpoint is not None or delta is not None or level == "full"
    ):
        raise ConfigError(f"the {norm} threat model has no clean images: no transfer, perturbation file or --checks")
    device = _device(running.device, model)
    distributed.init_from_env(device)  # under torchrun the ranks split the samples; rank 0 reports
    device = distributed.local_device(device)
    cell = _cell(model, data, attack, n_samples, settings, options, given_sha, chosen, budget=budget, norm=norm)
    if not threat_class(norm).gradient_steps or not built.threat.clean_images:
        level = "none"  # the default checks step with gradients: where they cannot, there is nothing to check
    subset = data.test.subset(n_samples, seed=running.seed)  # before any training: missing data is said first
    net, provenance = _obtain(model, cell.entry, data, device, weights.no_train)
    source = crafting.source if crafting.source is not None else model
    pair = _obtain(source, cell.source, data, device, weights.no_train) if cell.source else None
    with eval_mode(net):
        result = evaluate_cell(
            cell,
            net,
            data,
            subset,
            device=device,
            provenance=provenance,
            source=pair,
            attack=built,
            progress=running.progress,
            keep_examples=running.keep_examples,
        )
        checked, check_row = _checks(
            cell, net, subset, provenance, result, level, own=pair is None and delta is None, norm=norm, budget=budget
        )
    extra = result.row["extra"]
    extra["data_files"] = list(data.files_read("test"))
    if pair is not None:
        extra["source_checkpoint"] = str(pair[1].path) if pair[1].path else pair[1].description
    if given_sha is not None:
        extra.update(perturbation_file=str(crafting.perturbation), perturbation_sha256=given_sha)
    return Report(
        result.row,
        result.outcome,
        result.figures,
        result.attack,
        provenance,
        result.attack.learned(),
        checked,
        check_row,
        pair[1] if pair else None,
        tuple(data.info.class_names),
    )


def _options(keywords: dict[str, Any], *given: Any) -> tuple[ModelOptions, CraftOptions, RunOptions]:
    """The option objects with the keywords that name their fields set over them (taken out of ``keywords``)."""
    chosen = []
    for options in given:
        mine = {f.name: keywords.pop(f.name) for f in fields(options) if f.name in keywords}
        chosen.append(replace(options, **mine) if mine else options)
    return tuple(chosen)


def _attack_and_data(
    keywords: dict[str, Any],
    attack: str,
    dataset: str | ImageDataset,
    attack_settings: dict | None,
    dataset_options: dict | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The attack's settings and the data set's options that are set (not None); an argument of its own is refused."""
    settings, options = sort_keywords(keywords, attack, dataset, attack_settings, dataset_options)
    settings = {k: v for k, v in settings.items() if v is not None}
    for reserved in ("eps", "norm", "seed", "perturbation"):
        if reserved in settings:
            raise ConfigError(f"attack_settings cannot hold '{reserved}': it is an argument of its own")
    return settings, {k: v for k, v in options.items() if v is not None}


def _refuse_early(crafting: CraftOptions, level: str, norm: str | None) -> None:
    """What the arguments alone refuse, before any data is read."""
    if isinstance(crafting.source, str):
        check_model_name(crafting.source)
    elif crafting.source is None and crafting.source_checkpoint is None and crafting.source_defense != "none":
        raise ConfigError("--source-defense needs --source-model (or --source-checkpoint)")
    if level == "full" and norm is not None:
        _refuse_full_checks(norm)


def _refuse_full_checks(norm: str) -> None:
    if not threat_class(norm).gradient_steps:
        raise ConfigError(
            f"--checks test gradient attacks, which cannot step in the {norm} threat model "
            f"(use {Linf.name}, {L2.name} or {L1.name})"
        )


def _open(dataset: str | ImageDataset, options: dict[str, Any], data_dir: str | Path | None) -> ImageDataset:
    if isinstance(dataset, ImageDataset) and options:
        raise ConfigError(
            f"data-set options ({', '.join(options)}) apply to a data set given by name, not to a built one"
        )
    return dataset if isinstance(dataset, ImageDataset) else get_dataset(dataset, data_dir=data_dir, **options)


def _build(
    attack: str,
    data: ImageDataset,
    norm: str | None,
    eps: float | str | None,
    settings: dict[str, Any],
    perturbation: str | Path | None,
    seed: int,
) -> tuple[Attack, dict, Tensor | None, str | None, str, float]:
    """The attack as evaluated, the settings its record names, a saved δ, that file's hash, the norm and budget.

    A saved δ brings its own norm, budget and fitting settings; the budget is checked against the
    image before a model is trained for one that cannot run.
    """
    saved_with: dict[str, Any]
    delta, saved_with, given_sha = None, {}, None
    if perturbation is not None:
        delta, saved_with = load_perturbation(perturbation)
        given_sha = file_sha256(perturbation)
        settings = {**settings, **fitted_with(saved_with, Path(perturbation), attack, settings)}
    norm = threat_class(norm or saved_with.get("norm") or ATTACKS.default(attack, "norm")).name
    eps = eps if eps is not None else saved_with.get("eps")
    budget = (
        (parse_eps(eps) if isinstance(eps, str) else eps)
        if eps is not None
        else default_eps(norm, data.info.input_shape[0])
    )
    built = ATTACKS.build(attack, eps=budget, norm=norm, seed=seed, perturbation=delta, **settings)
    built.check_fits(data.info.input_shape)
    return built, settings, delta, given_sha, norm, budget


def _cell(
    model: str | nn.Module,
    data: ImageDataset,
    attack: str,
    n_samples: int,
    settings: dict[str, Any],
    options: dict[str, Any],
    given_sha: str | None,
    chosen: tuple,
    *,
    budget: float,
    norm: str,
) -> Cell:
    """The one-cell suite this evaluation is: the runner's unit, so its record is the runner's row."""
    weights, crafting, running = chosen
    steps_in = threat_class(norm).gradient_steps  # a defense trains in a ball gradients can step in, else L∞
    trained = {
        "eps": parse_eps(str(weights.defense_eps))
        if weights.defense_eps is not None
        else (budget if steps_in else None),
        "norm": norm if steps_in else Linf.name,
    }
    entry = _entry(model, weights.defense, trained, weights.checkpoint, weights.weights)
    crafted = None
    if crafting.source is not None or crafting.source_checkpoint is not None:
        source = crafting.source if crafting.source is not None else model
        crafted = _entry(source, crafting.source_defense, trained, crafting.source_checkpoint, None)
    described = {k: v for k, v in options.items() if k not in ("download", "workers")}  # what results depend on
    one = Suite(
        name=running.suite,
        dataset=data.info.name,
        models=(entry,),
        dataset_options=described,
        n_samples=n_samples,
        seed=running.seed,
        fit_samples=crafting.fit_samples,
        batch_size=running.batch_size,
        check_samples=running.check_samples,
        attacks=(AttackEntry(attack, norm, (budget,), settings),),
    )
    return Cell(one, entry, one.attacks[0], budget, crafted, given_sha)


def _checks(
    cell: Cell,
    net: nn.Module,
    subset: IndexedSplit,
    provenance: Provenance,
    result: CellResult,
    level: str,
    *,
    own: bool,
    norm: str,
    budget: float,
) -> tuple[CheckReport | None, dict[str, Any] | None]:
    """The gradient-masking checks at ``level``, their flags added to the record's ``extra``."""
    if level == "none":
        return None, None
    own = own and not result.attack.learns_from_data  # a per-sample figure of its own
    outcome = result.outcome if own and isinstance(result.outcome, Evaluation) else None  # a fooling rate has none
    report, check_row = check_entry(
        cell.suite,
        cell.entry,
        net,
        subset,
        norm,
        budget,
        provenance,
        level=level,
        adaptation=Adaptation.of(result.attack),
        white=outcome.robust if outcome is not None else None,
    )
    result.row["extra"].update(checks=report.summary(), check_details=report.to_dict())
    return report, check_row


def sort_keywords(
    keywords: dict[str, Any],
    attack: str,
    dataset: str | ImageDataset,
    attack_settings: dict | None,
    dataset_options: dict | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
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
            raise ConfigError(
                f"evaluate_model: '{key}' is not an argument, a setting of {attack} or an option of {name}"
                + (f" (did you mean {close[0]}?)" if close else "")
                + f"; {attack}'s settings: "
                f"{', '.join(sorted(takes))}; {name}'s options: {', '.join(here) or 'none'}"
            )
        if key in into:
            raise ConfigError(f"evaluate_model: '{key}' is given twice, as a keyword and in {named}")
        into[key] = value
    return settings, data_options


_OWN = (set(inspect.signature(evaluate_model).parameters) - {"keywords"}).union(
    *({f.name for f in fields(options)} for options in OPTION_CLASSES)
)  # never an attack's or data set's keyword


def _device(device: str | torch.device, model: str | nn.Module) -> torch.device:
    """The named device; for a module and ``auto``, the module's own (it is not moved)."""
    if isinstance(model, nn.Module) and str(device) == "auto":
        param = next(model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")
    return resolve_device(str(device))


def _entry(
    model: str | nn.Module, defense: str, trained: dict, checkpoint: str | Path | None, weights: str | Path | None
) -> ModelEntry:
    name = model if isinstance(model, str) else model_name(model)
    settings = {k: v for k, v in trained.items() if v is not None} if defense != "none" else {}
    return ModelEntry(
        name,
        defense,
        settings,
        Path(checkpoint) if checkpoint is not None else None,
        weights=str(weights) if weights is not None else None,
    )


def _obtain(
    model: str | nn.Module, entry: ModelEntry, data: ImageDataset, device: torch.device, no_train: bool
) -> tuple[nn.Module, Provenance]:
    """A name through the one resolver; a module as given (on an explicit device, under the entry's defense)."""
    defense = entry_defense(entry, data)
    if isinstance(model, str):
        found = resolve_model(
            model,
            data,
            device=device,
            defense=defense,
            checkpoint=entry.checkpoint,
            weights=entry.weights,
            allow_train=not no_train,
        )
        return found.model, found.provenance
    if entry.checkpoint is not None or entry.weights is not None:
        raise ConfigError(
            "an nn.Module is evaluated as given: checkpoint and weights name a registered model's weights"
        )
    model = model.to(device)
    digest = weights_sha256(model.state_dict())  # no file: the weights alone name it
    wrapped = defense.wrap(model) if defense is not None else model
    described = f"{IN_MEMORY} {model_name(model)} weights sha256 {digest}"
    return wrapped, Provenance(description=described, weights_sha256=digest)


def fitted_with(saved_with: dict, path: Path, attack_name: str, given: dict) -> dict:
    """The settings a saved δ was fitted with, so the record of applying it names them; a conflicting
    setting is refused, since δ cannot change after fitting."""
    made_by = saved_with.get("attack", attack_name)
    if made_by not in ATTACKS or ATTACKS.get(made_by) is not ATTACKS.get(attack_name):
        raise ConfigError(f"{path} was made by --attack {made_by}, not {attack_name}")
    fitted = saved_with.get("settings", "{}")
    try:
        fitted = json.loads(fitted) if isinstance(fitted, str) else fitted
    except json.JSONDecodeError:
        fitted = None
    if not isinstance(fitted, dict):
        raise ConfigError(f"{path}: its record's attack settings are not a JSON object")
    fitted = {k: v for k, v in fitted.items() if k != "seed"}  # the seed is the run's, not δ's
    for key, value in fitted.items():
        if given.get(key) is not None and given[key] != value:
            raise ConfigError(
                f"{path} was fitted with {key}={value!r}, not {given[key]!r}: drop that setting or fit anew"
            )
    return fitted
