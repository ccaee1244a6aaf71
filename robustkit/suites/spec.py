"""Benchmark suites: a YAML file read with ``yaml.safe_load`` into frozen, validated dataclasses.

Every problem is one ``ConfigError`` line naming the file, the key and what is wrong, raised
before anything is trained or attacked. A suite expands into cells, one per
(model entry × attack × ε); a cell's ``key`` hashes everything its result depends on, so a
changed cell gets a new key and only it is evaluated again.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from robustkit.adaptation import Adaptation, check_level
from robustkit.data import check_dataset_settings
from robustkit.errors import ConfigError, RobustkitError
from robustkit.models import check_model_name
from robustkit.registry import ATTACKS, DATASETS, DEFENSES
from robustkit.results.published import read_published
from robustkit.threats import ThreatModel, parse_eps, threat_class
from robustkit.training.loop import TrainConfig
from robustkit.weights.checkpoint import is_weights_file

SUITE_KEYS = {
    "name",
    "dataset",
    "dataset_options",
    "n_samples",
    "seed",
    "fit_samples",
    "batch_size",
    "models",
    "attacks",
    "transfer",
    "checks",
    "check_samples",
    "published",
    "headline",
    "corruptions",
}
MODEL_KEYS = {"model", "defense", "defense_settings", "checkpoint", "weights", "train", "label", "certify"}
CERTIFY_KEYS = {"sigma", "n", "n0", "alpha", "radii", "n_samples", "attack"}
ATTACK_KEYS = {"attack", "name", "norm", "eps", "settings"}
CORRUPTION_KEYS = {"names", "severities", "folder"}
_VARIANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")  # a variant's name heads leaderboard columns: no spaces
TRAIN_KEYS = {f.name for f in fields(TrainConfig)} | {"n_train"}


@dataclass(frozen=True)
class ModelEntry:
    """One model to rank: an architecture, how it was (or is to be) trained, or its checkpoint."""

    model: str
    defense: str = "none"
    defense_settings: dict[str, Any] = field(default_factory=dict)  # eps, norm, steps, …
    checkpoint: Path | None = None  # given weights; else trained with the recipe (+ ``train``) and cached
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides and n_train
    label: str = ""
    weights: str | None = None  # a state-dict file or the model library's weights name: evaluated, never trained
    certify: CertifySpec | None = None  # randomized smoothing of this entry (not in ``describe``: cell keys stay)

    @property
    def name(self) -> str:
        return self.label or (self.model if self.defense == "none" else f"{self.model}+{self.defense}")

    def describe(self) -> dict[str, Any]:
        described = {
            "model": self.model,
            "defense": self.defense,
            "defense_settings": self.defense_settings,
            "train": self.train,
            "label": self.name,
        }
        if self.weights is not None:  # only when given: entries without weights keep their cells' keys
            described["weights"] = self.weights
        return described


@dataclass(frozen=True)
class CertifySpec:
    """``certify:`` of an entry: randomized smoothing's settings (``robustkit.certification.Smoothing``), the radii
    shown [multiples of 0.25 up to the largest certifiable], the images [100] and whether SmoothAdv runs too."""

    sigma: float = 0.25
    n: int = 10_000
    n0: int = 100
    alpha: float = 0.001
    radii: tuple[float, ...] | None = None
    n_samples: int = 100
    attack: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma,
            "n": self.n,
            "n0": self.n0,
            "alpha": self.alpha,
            "radii": self.radii,
            "n_samples": self.n_samples,
            "attack": self.attack,
        }

    def key(self, suite: Suite, entry: ModelEntry, weights_sha256: str) -> str:
        """The store key of the entry's certification: everything its figures depend on."""
        text = {
            "kind": "certify",
            "dataset": suite.dataset,
            "dataset_options": suite.dataset_options,
            "seed": suite.seed,
            "entry": entry.describe(),
            "checkpoint_sha256": weights_sha256,
            "certify": self.describe(),
        }
        return hashlib.sha256(json.dumps(text, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class AttackEntry:
    """An attack at a list of ε; ``name`` tells variants of one attack apart (PGD with and without BPDA)."""

    attack: str
    norm: str
    eps: tuple[float, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def label(self) -> str:
        """What the store and the leaderboards call it: the variant's name, else the attack's."""
        return self.name or self.attack


@dataclass(frozen=True)
class CorruptionEntry:
    """A suite's ``corruptions:``: which corruptions (None: the data's whole set), which severities
    ("benchmark", "all" or steps), or a precomputed CIFAR-10-C-layout folder read instead of generating."""

    names: tuple[str, ...] | None = None
    severities: str | tuple[int, ...] = "benchmark"
    folder: Path | None = None

    def describe(self) -> dict[str, Any]:
        return {"names": self.names, "severities": self.severities, "folder": str(self.folder) if self.folder else None}

    def key(self, suite: Suite, entry: ModelEntry, weights_sha256: str) -> str:
        """The store key of an entry's corruption run: everything its bits depend on, hashed as a cell's."""
        identity = {
            "dataset": suite.dataset,
            "dataset_options": suite.dataset_options,
            "n_samples": suite.n_samples,
            "seed": suite.seed,
            "entry": entry.describe(),
            "checkpoint_sha256": weights_sha256,
            "corruptions": self.describe(),
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Cell:
    """One evaluation: a model entry, an attack at one ε, on the suite's fixed sample subset.

    A transfer cell also names a ``source`` entry: the attack crafts on it and ``entry`` is scored.
    """

    suite: Suite
    entry: ModelEntry
    attack: AttackEntry
    eps: float
    source: ModelEntry | None = None
    perturbation_sha256: str | None = None  # a given δ (``evaluate --perturbation``) applied instead of fitting one

    def identity(self, weights_sha256: str, source_sha256: str | None = None) -> dict[str, Any]:
        """What the cell's result depends on. The weights are named by their digest (``Provenance.identity``),
        not the file's hash, so a retrain with bit-identical weights shares its cells. The field keeps its
        name from when it held the file's first 16 hex digits, so a key of that time is this function's
        value at them (``runner`` re-keys such rows where the file is at hand)."""
        s = self.suite
        identity = {
            "dataset": s.dataset,
            "dataset_options": s.dataset_options,
            "n_samples": s.n_samples,
            "seed": s.seed,
            "fit_samples": s.fit_samples,
            "entry": self.entry.describe(),
            "checkpoint_sha256": weights_sha256,
            "attack": self.attack.attack,
            **self.threat.describe(),
            "settings": self.attack.settings,
        }
        if self.attack.name:  # only variants: the keys of cells stored before names existed stay as they were
            identity["name"] = self.attack.name
        if self.perturbation_sha256 is not None:  # only when given: fitted cells keep their keys
            identity["perturbation_sha256"] = self.perturbation_sha256
        if self.source is not None:
            identity.update(source=self.source.describe(), source_checkpoint_sha256=source_sha256)
        return identity

    def key(self, weights_sha256: str, source_sha256: str | None = None) -> str:
        text = json.dumps(self.identity(weights_sha256, source_sha256), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    @property
    def threat(self) -> ThreatModel:
        """The cell's threat model, with the settings the attack gives it beyond ε."""
        return ATTACKS.build(self.attack.attack, eps=self.eps, norm=self.attack.norm, **self.attack.settings).threat

    @property
    def title(self) -> str:
        source = f"{self.source.name} → " if self.source is not None else ""
        return f"{source}{self.entry.name} × {self.attack.label} {self.threat.label()}"


@dataclass(frozen=True)
class Suite:
    name: str
    dataset: str
    models: tuple[ModelEntry, ...]
    attacks: tuple[AttackEntry, ...]
    dataset_options: dict[str, Any] = field(default_factory=dict)
    n_samples: int = 1000
    seed: int = 0
    fit_samples: int = 1000  # training images a data-fitted attack (universal) learns from
    batch_size: int = 256
    path: Path | None = None
    transfer: tuple[AttackEntry, ...] = ()  # attacks crafted on every entry and scored on every entry
    checks: str = "default"  # gradient-masking checks per (entry, norm, ε, BPDA/EOT) of the gradient attacks: none | default | full
    check_samples: int = 200
    published: Path | None = None  # a table of published figures to show beside ours (``robustkit.results.published``)
    headline: tuple[str, float] | None = None  # (norm, ε) whose worst case ranks the leaderboard [its smallest L∞ ε]
    corruptions: CorruptionEntry | None = None  # common corruptions for every entry (``robustkit.corruptions``)

    def cells(self, shard: tuple[int, int] = (0, 1)) -> list[Cell]:
        """Every cell in suite order (transfer cells last); with ``shard=(i, n)`` the share i of n (0-based)."""
        index, count = shard
        every = [Cell(self, m, a, e) for m in self.models for a in self.attacks for e in a.eps]
        every += [
            Cell(self, target, a, e, source)
            for target in self.models
            for source in self.models
            for a in self.transfer
            for e in a.eps
        ]
        return [c for j, c in enumerate(every) if j % count == index]

    def check_points(self) -> list[tuple[str, float, Adaptation]]:
        """Where the gradient-masking checks run: each (norm, ε) of the gradient-norm attacks, once per way
        those attacks differentiate the model (BPDA, EOT), so an adapted attack's cells are judged as adapted."""
        # from the built attack, not its written settings: a setting's default can bring EOT (autoattack's rand)
        return list(
            dict.fromkeys(
                (a.norm, e, Adaptation.of(ATTACKS.build(a.attack, eps=e, norm=a.norm, **a.settings)))
                for a in self.attacks
                if threat_class(a.norm).gradient_steps
                for e in a.eps
            )
        )


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; any problem is one line naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"suite {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise ConfigError(f"{path}: not valid YAML{line} ({getattr(err, 'problem', err)})") from None
    try:
        return _suite(raw, path)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _suite(raw: Any, path: Path) -> Suite:
    data = _mapping(raw, "the suite", SUITE_KEYS, required={"dataset", "models", "attacks"})
    try:
        DATASETS.get(data["dataset"])
    except RobustkitError as err:
        raise ConfigError(f"dataset: {err}") from None
    dataset_options = _mapping(data.get("dataset_options", {}), "dataset_options")
    try:
        check_dataset_settings(data["dataset"], dataset_options)
    except RobustkitError as err:
        raise ConfigError(f"dataset_options: {err}") from None
    models = tuple(_model(m, f"models[{i}]", path.parent) for i, m in enumerate(_list(data["models"], "models")))
    attacks = tuple(_attack(a, f"attacks[{i}]") for i, a in enumerate(_list(data["attacks"], "attacks")))
    transfer = (
        tuple(_attack(a, f"transfer[{i}]") for i, a in enumerate(_list(data["transfer"], "transfer")))
        if "transfer" in data
        else ()
    )
    checks = check_level(data.get("checks", "default"))  # true: the full set, as --checks
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"models: two entries are both called '{max(names, key=names.count)}'; give one a label")
    for key, entries in (("attacks", attacks), ("transfer", transfer)):
        seen = [(a.label, a.norm, e) for a in entries for e in a.eps]
        twice = [s for s in seen if seen.count(s) > 1]
        if twice:
            label, norm, eps = twice[0]
            raise ConfigError(
                f"{key}: {label} {norm} ε={eps:g} appears twice; give a variant of an attack its own name (name: …)"
            )
    suite = Suite(
        name=str(data.get("name", path.stem)),
        dataset=data["dataset"],
        models=models,
        attacks=attacks,
        dataset_options=dataset_options,
        n_samples=_positive(data, "n_samples", 1000),
        seed=_integer(data, "seed", 0),
        fit_samples=_positive(data, "fit_samples", 1000),
        batch_size=_positive(data, "batch_size", 256),
        path=path,
        transfer=transfer,
        checks=checks,
        check_samples=_positive(data, "check_samples", 200),
        published=_published(data, path.parent),
        headline=_headline(data, attacks),
        corruptions=_corruptions(data.get("corruptions"), path.parent),
    )
    return suite


def _corruptions(raw: Any, base: Path) -> CorruptionEntry | None:
    """``corruptions: {names: [fog, …], severities: benchmark | all | [1, 3, 5], folder: PATH}`` (``true``: defaults)."""
    if raw is None or raw is False:
        return None
    data = {} if raw is True else _mapping(raw, "corruptions", CORRUPTION_KEYS)
    names = data.get("names")
    if names is not None:
        names = tuple(str(n) for n in (names if isinstance(names, list) else [names]))
    severities = data.get("severities", "benchmark")
    if isinstance(severities, list):
        if not severities or any(not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 5 for v in severities):
            raise ConfigError(f"corruptions.severities: steps 1 to 5, got {severities!r}")
        severities = tuple(severities)
    elif severities not in ("benchmark", "all"):
        raise ConfigError(f"corruptions.severities: benchmark, all or a list of steps 1–5, got {severities!r}")
    folder = data.get("folder")
    if folder is not None:
        folder = (base / str(folder)).expanduser()
        if not (folder / "labels.npy").is_file():
            raise ConfigError(f"corruptions.folder: {folder} holds no labels.npy (CIFAR-10-C's layout)")
    return CorruptionEntry(names=names, severities=severities, folder=folder)


def _headline(data: dict[str, Any], attacks: tuple[AttackEntry, ...]) -> tuple[str, float] | None:
    """``headline: {norm: linf, eps: 0.1}``: the budget the leaderboard ranks by; one the suite evaluates."""
    if data.get("headline") is None:
        return None
    raw = _mapping(data["headline"], "headline", {"norm", "eps"}, required={"norm", "eps"})
    norm, eps = str(raw["norm"]).lower(), parse_eps(raw["eps"], "headline.eps")
    budgets = [(a.norm, e) for a in attacks if threat_class(a.norm).clean_images for e in a.eps]
    if not any(n == norm and math.isclose(e, eps, rel_tol=1e-9) for n, e in budgets):
        have = ", ".join(f"{n} {e:.4g}" for n, e in dict.fromkeys(budgets)) or "none"
        raise ConfigError(
            f"headline: {norm} ε={eps:.4g} is not a budget the suite's attacks evaluate (they have: {have})"
        )
    return norm, eps


def _published(data: dict[str, Any], base: Path) -> Path | None:
    """The suite's table of published figures (relative to the suite file), read once to validate it."""
    if data.get("published") is None:
        return None
    path = (base / str(data["published"])).expanduser()
    if not path.is_file():
        raise ConfigError(f"published: {path} does not exist")
    read_published(path)
    return path


def _model(raw: Any, where: str, base: Path) -> ModelEntry:
    data = _mapping(raw, where, MODEL_KEYS, required={"model"})
    try:
        check_model_name(str(data["model"]))
    except RobustkitError as err:
        raise ConfigError(f"{where}.model: {err}") from None
    defense = str(data.get("defense", "none"))
    settings = _mapping(data.get("defense_settings", {}), f"{where}.defense_settings")
    if defense.lower() != "none":
        try:
            DEFENSES.build(defense, **{"eps": 0.1, **{k: _number(v) for k, v in settings.items()}})
        except RobustkitError as err:
            raise ConfigError(f"{where}.defense: {err}") from None
    elif settings:
        raise ConfigError(f"{where}.defense_settings: given, but the defense is none")
    train = _mapping(data.get("train", {}), f"{where}.train", TRAIN_KEYS)
    try:
        TrainConfig(**{k: v for k, v in train.items() if k != "n_train"})
    except (RobustkitError, TypeError) as err:
        raise ConfigError(f"{where}.train: {err}") from None
    checkpoint = data.get("checkpoint")
    if checkpoint is not None:
        checkpoint = (base / str(checkpoint)).expanduser()
        if not checkpoint.is_file():
            raise ConfigError(f"{where}.checkpoint: {checkpoint} does not exist")
    weights = data.get("weights")
    if weights is not None:
        weights = str(weights)
        if checkpoint is not None or train:
            raise ConfigError(f"{where}.weights: evaluated as given, so no checkpoint or train beside it")
        if is_weights_file(weights):
            weights = str((base / weights).expanduser())
            if not Path(weights).is_file():
                raise ConfigError(f"{where}.weights: {weights} does not exist")
    return ModelEntry(
        model=data["model"],
        defense=defense.lower(),
        defense_settings={k: _number(v) for k, v in settings.items()},
        checkpoint=checkpoint,
        train=train,
        label=str(data.get("label", "")),
        weights=weights,
        certify=_certify(data["certify"], f"{where}.certify") if "certify" in data else None,
    )


def _certify(raw: Any, where: str) -> CertifySpec:
    """``certify: {sigma: 0.25, n: 10000, radii: [0, 0.25, 0.5]}``, checked by building the smoothing it names."""
    from robustkit.certification.smoothing import Smoothing

    data = _mapping(raw if raw is not None else {}, where, CERTIFY_KEYS)
    radii = data.get("radii")
    if radii is not None:
        if (
            not isinstance(radii, list)
            or not radii
            or not all(
                isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r) and r >= 0 for r in radii
            )
        ):
            raise ConfigError(f"{where}.radii must be a non-empty list of numbers ≥ 0, got {radii!r}")
        radii = tuple(sorted(float(r) for r in radii))
    attack = data.get("attack", True)
    if not isinstance(attack, bool):
        raise ConfigError(f"{where}.attack must be true or false, got {attack!r}")
    spec = CertifySpec(
        **{k: data[k] for k in ("sigma", "n", "n0", "alpha") if k in data},
        radii=radii,
        n_samples=_positive(data, "n_samples", 100),
        attack=attack,
    )
    try:
        Smoothing(sigma=spec.sigma, n=spec.n, n0=spec.n0, alpha=spec.alpha)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    return spec


def _attack(raw: Any, where: str) -> AttackEntry:
    data = _mapping(raw, where, ATTACK_KEYS, required={"attack", "eps"})
    try:
        cls = ATTACKS.get(data["attack"])
    except RobustkitError as err:
        raise ConfigError(f"{where}.attack: {err}") from None
    norm = str(data.get("norm", ATTACKS.default(cls.name, "norm"))).lower()
    try:
        problem = cls.refuses_norm(norm, cls.name)
    except ConfigError as err:  # "norm: unknown threat model …"
        raise ConfigError(f"{where}.{err}") from None
    if problem:
        raise ConfigError(f"{where}.norm: {problem}")
    values = data["eps"] if isinstance(data["eps"], list) else [data["eps"]]
    if not values:
        raise ConfigError(f"{where}.eps: give at least one value")
    eps = tuple(parse_eps(v, f"{where}.eps") for v in values)
    settings = {k: _number(v) for k, v in _mapping(data.get("settings", {}), f"{where}.settings").items()}
    for e in eps:
        try:
            ATTACKS.build(cls.name, eps=e, norm=norm, **settings)
        except RobustkitError as err:
            raise ConfigError(f"{where}: {err}") from None
    return AttackEntry(attack=cls.name, norm=norm, eps=eps, settings=settings, name=_variant(data, cls, where))


def _variant(data: dict[str, Any], cls: type, where: str) -> str:
    """The entry's variant name ("" for none, or its attack's own name); another attack's name would mislead."""
    name = data.get("name", "")
    if not isinstance(name, str) or (name and not _VARIANT.fullmatch(name)):
        raise ConfigError(f"{where}.name: a variant's name is letters, digits and - _ . +, got {name!r}")
    if name and name in ATTACKS:
        if ATTACKS.get(name) is not cls:
            raise ConfigError(f"{where}.name: '{name}' is another attack's name; pick one of your own")
        return ""  # its own name: the plain attack, whose cells keep their keys
    return name


def _mapping(raw: Any, where: str, allowed: set[str] | None = None, required: set[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {type(raw).__name__}")
    if allowed is not None:
        unknown = sorted(set(map(str, raw)) - allowed)
        if unknown:
            raise ConfigError(f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(raw))
    if missing:
        raise ConfigError(f"{where}: missing key '{missing[0]}'")
    return dict(raw)


def _list(raw: Any, where: str) -> list[Any]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where} must be a non-empty list")
    return raw


def _number(value: Any) -> Any:
    """Fractions such as 8/255 are numbers in settings too."""
    return parse_eps(value) if isinstance(value, str) and "/" in value else value


def _positive(data: dict[str, Any], key: str, default: int) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key} must be a whole number ≥ 1, got {value!r}")
    return value


def _integer(data: dict[str, Any], key: str, default: int) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{key} must be a whole number, got {value!r}")
    return value
