"""Training a model into the checkpoint cache: its paths, the recipe guard, and the shortcut scripts use."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import torch
from torch import nn

from robustkit import paths
from robustkit.data.base import ImageDataset
from robustkit.defense import Defense
from robustkit.errors import CheckpointError, ConfigError
from robustkit.models import get_model, model_revision
from robustkit.training import distributed
from robustkit.training.loop import NOT_RECIPE, TrainConfig, TrainResult, train_model
from robustkit.weights.checkpoint import CheckpointRecord, read_checkpoint, read_record, save_checkpoint, weights_sha256

log = logging.getLogger(__name__)


def recipe_tag(model_name: str, defense: Defense | None, overrides: dict[str, Any] | None) -> str | None:
    """``recipe<8 hex>`` naming what a training changes from the default recipe of (model, defense)
    (None when it changes nothing).

    The defaults are filled in first: an override equal to the model's or the defense's own value
    (``--lr 0.05`` on lenet5, whose recipe says 0.05) changes nothing, so equal trainings share one
    path. Settings that leave the weights alone (``checkpoint_every``) name nothing either. A defense
    setting other than its own default (madry ``steps 3``) changes the weights as much, so it counts too.
    """
    changed = departures(model_name, defense, overrides)
    changed.update({f"{defense.name}.{k}": v for k, v in defense_departures(defense).items()})
    if not changed:
        return None
    return "recipe" + hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]


def departures(model_name: str, defense: Defense | None, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The overrides that change the weights from what (model, defense)'s own recipe trains."""
    trained = defense.recipe if defense is not None and defense.trains_weights else {}
    default = TrainConfig.for_model(model_name, trained).recipe()
    return {
        k: v
        for k, v in (overrides or {}).items()
        if v is not None and k not in NOT_RECIPE and (k not in default or default[k] != v)
    }


def defense_departures(defense: Defense | None) -> dict[str, Any]:
    """The settings of a weight-training defense that differ from its own defaults at its ε and norm."""
    if defense is None or not defense.trains_weights:
        return {}
    default = type(defense)(eps=defense.eps, norm=defense.norm).settings()
    return {k: v for k, v in defense.settings().items() if v != default.get(k)}


def revision_tag(model_name: str) -> str | None:
    """``rev2`` for an architecture changed since its first release (``model_revision``), else None."""
    revision = model_revision(model_name)
    return f"rev{revision}" if revision > 1 else None


def cache_path(
    data: ImageDataset, model_name: str, defense: Defense | None, recipe: dict[str, Any] | None = None
) -> Path:
    """The cached checkpoint of (dataset, model, defense, its threat model, training overrides).

    A defense that trains no weights (an input transform) shares the undefended model's checkpoint.
    Overrides that change the default recipe (``train:`` in a suite, ``--epochs`` etc. on ``train``)
    get a path of their own (``recipe_tag``), so a checkpoint of one recipe never replaces another's.
    A model whose architecture changed since its first release (``revision`` ≥ 2) names its revision,
    so a checkpoint of the earlier architecture, which may load into the new one without a shape
    error, is never taken for it.
    """
    trained = defense is not None and defense.trains_weights
    parts = (defense.tag() if trained else None, revision_tag(model_name), recipe_tag(model_name, defense, recipe))
    tag = "-".join(t for t in parts if t) or None
    return paths.checkpoint_path(data.info.name, model_name, defense.name if trained else "none", tag=tag)


def recipe_changes(
    record: CheckpointRecord, config: TrainConfig, n_train: int, weights: str | None, defense: Defense | None = None
) -> list[str]:
    """How ``config`` (under ``defense``) departs from the recipe a cached checkpoint was trained with,
    as ``setting old → new`` (``["seed 0 → 1"]``); empty when it would train exactly that (device and
    history aside)."""
    wanted = {**config.recipe(), "n_train": n_train, "pretrained": weights}
    held = record.train_settings or {}
    changes = [f"{k} {held[k]} → {v}" for k, v in wanted.items() if k in held and held[k] != v]
    unsaid = [k for k, v in wanted.items() if k not in held and v is not None]  # a hand-made or older record
    changes += [f"{', '.join(unsaid)} not in its record"] if unsaid else []
    name = defense.name if defense else "none"
    if record.defense != name:
        changes.insert(0, f"defense {record.defense} → {name}")
    elif defense is not None and record.defense_settings != defense.settings():
        old, new = record.defense_settings, defense.settings()
        changes += [
            f"{name}.{k} {old.get(k)} → {new.get(k)}" for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)
        ]
    return changes


def stale_reason(
    path: Path, record: CheckpointRecord, data: ImageDataset, model_name: str, defense: Defense | None
) -> str | None:
    """Why a cached checkpoint no longer stands for the recipe its path names, else None.

    A path names only what departs from today's defaults, so when a default changes (a model's lr, a
    defense's steps) a checkpoint trained under the old one would be taken silently. Its record says how
    it was trained: the path those settings give today must be its own. A record that does not say
    (hand-made, or from before records held every setting) is not judged. The seed is a setting like the
    others (it decides the weights), so a file trained with seed 1 where seed 0's belongs is stale too.
    """
    settings = record.train_settings or {}
    keys = list(TrainConfig().recipe())
    if any(k not in settings for k in keys):
        return None
    recorded = {k: settings[k] for k in keys}
    recorded["weights"] = settings.get("pretrained")
    n_train = settings.get("n_train")  # the whole split is the default, whether or not it was asked for by number
    sizes = [None, n_train] if n_train in (None, len(data.train)) else [n_train]
    trained = defense if defense is not None and defense.trains_weights else None
    if trained is not None and record.defense_settings:
        try:
            trained = dataclasses.replace(trained, **record.defense_settings)
        except (TypeError, ValueError, ConfigError) as error:
            return f"its record's {trained.name} settings are not today's ({error})"
    if any(cache_path(data, model_name, trained, {**recorded, "n_train": n}) == path for n in sizes):
        return None
    recorded["n_train"] = sizes[0]
    changed = {**departures(model_name, trained, recorded), **defense_departures(trained)}
    said = ", ".join(f"{k} {v}" for k, v in changed.items()) or "every setting at its default"
    return f"its record says it was trained with {said}, which today names {cache_path(data, model_name, trained, recorded).name}"


_HELD: set[Path] = set()  # checkpoints whose training lock this process holds (``resolve_model`` → ``train_and_save``)


@contextmanager
def training_lock(checkpoint: Path) -> Iterator[None]:
    """One trainer per checkpoint among processes of one machine (``--shard i/n`` run in parallel, or
    ``robustkit train`` beside a suite): the others wait, then load its weights rather than train their own
    (on a GPU, training is not bit-reproducible, so two trainers would write two different checkpoints for
    one entry). Taken again by the process that holds it, it lets it through.

    Not under torchrun, whose ranks train one model together, and not where ``fcntl`` is missing (Windows).
    """
    key = checkpoint.resolve()
    if distributed.world_size() > 1 or fcntl is None or key in _HELD:
        yield
        return
    lock = paths.lock_path(checkpoint)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another process is training %s; waiting for it", checkpoint.name)
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, also if that process dies
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)


def train_and_save(
    model_name: str,
    data: ImageDataset,
    *,
    device: torch.device,
    defense: Defense | None = None,
    seed: int = 0,
    out: Path | None = None,
    n_train: int | None = None,
    weights: str | None = None,
    resume: bool = False,
    force: bool = False,
    **overrides: Any,
) -> tuple[nn.Module, CheckpointRecord, TrainResult, Path]:
    """Train with the model's recipe, the defense's recipe, then ``overrides``; save with its record.

    Without ``out`` the checkpoint goes to the cache, at a path of its own when anything (overrides,
    ``n_train``, ``weights``) departs from the default recipe.

    Every epoch (and every ``checkpoint_every`` steps) leaves a resume state beside the checkpoint
    (``<name>.resume.pt``); with ``resume`` a killed run continues from it, exactly. Under torchrun only rank 0 writes. A file at the path
    that holds a checkpoint of another recipe is never replaced unless ``force``: a ``CheckpointError``
    names ``--out`` and ``--force`` instead (before any training). A defense that trains
    no weights gets the bare model trained and recorded without it (``resolve_model`` wraps it).
    """
    if defense is not None and not defense.trains_weights:
        log.info("%s trains no weights: training the undefended model it is applied to", defense.name)
        defense = None
    config = TrainConfig.for_model(model_name, defense.recipe if defense else {}, seed=seed, **overrides)
    train_split = data.train.subset(n_train, seed=seed)
    asked = {**overrides, "n_train": n_train, "weights": weights, "seed": seed}  # the seed too: it decides the weights
    recipe = {k: v for k, v in asked.items() if v is not None}
    path = Path(out) if out else cache_path(data, model_name, defense, recipe)
    resume_path = path.with_name(path.name + ".resume.pt")
    with training_lock(path):  # the same one the resolver takes: one trainer per file
        existing = read_record(path) if path.is_file() and not (force or resume) else None
        changes = recipe_changes(existing, config, len(train_split), weights, defense) if existing is not None else []
        if changes:
            raise CheckpointError(
                f"{path} holds a checkpoint trained with another recipe ({', '.join(changes)}; "
                f"accuracy {existing.clean_accuracy}); write elsewhere with --out, or replace it "
                "with --force"
            )
        replaced = _weights_digest(path)
        model = get_model(model_name, data.info, seed=seed, weights=weights)
        if not resume and distributed.is_main() and resume_path.exists():
            log.warning("%s holds an interrupted run; starting over (pass --resume to continue it)", resume_path)
            resume_path.unlink()
        distributed.barrier()  # every rank, always: a barrier only some ranks reach hangs the run
        fit_kwargs = dict(info=data.info, test=data.test, device=device, resume_path=resume_path)
        if defense is None:
            result = train_model(model, train_split, config, **fit_kwargs)
        else:
            result = defense.fit(model, train_split, config=config, **fit_kwargs)
        record = CheckpointRecord(
            model=model_name,
            dataset=data.info.name,
            dataset_info=data.info.to_dict(),
            defense=defense.name if defense else "none",
            defense_settings=defense.settings() if defense else {},
            train_settings={
                **asdict(config),
                "n_train": len(train_split),
                "pretrained": weights,
                "device": str(device),
                "processes": distributed.world_size(),
                "history": result.history,
                "stopped_by_guard": result.stopped_early,
            },
            epochs=len(result.history),
            seed=seed,
            clean_accuracy=result.test_accuracy,
        )
        if distributed.is_main():
            save_checkpoint(model, path, record)
            resume_path.unlink(missing_ok=True)
            if replaced is not None:
                _say_if_identical(model, replaced, path)
    return model.eval(), record, result, path


def _weights_digest(path: Path) -> str | None:
    """The weights digest of the checkpoint a training is about to replace (None if none is there, or
    it is unreadable: it is replaced all the same)."""
    if not path.is_file():
        return None
    try:
        return weights_sha256(read_checkpoint(path)[0])
    except CheckpointError:
        return None


def _say_if_identical(model: nn.Module, replaced: str, path: Path) -> None:
    """A retrain of the same recipe on the CPU is bit-identical: say so, since the file's SHA-256 differs
    anyway (its header holds the time and speed of the run); cells keyed on the weights are reused."""
    if weights_sha256(model.state_dict()) == replaced:
        log.info(
            "weights identical to the cached checkpoint's, which this file replaces (weights sha256 %s…): its "
            "evaluations are reused; the file's SHA-256 differs only by its header (the run's time and speed)",
            replaced[:16],
        )
    else:
        log.info("weights differ from those of the checkpoint it replaced at %s", path)
