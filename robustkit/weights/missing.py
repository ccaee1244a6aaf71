"""What to say when a checkpoint is missing and training is not allowed: the `robustkit train` command
that writes exactly that checkpoint, and the checkpoints of the same model and defense at other ε."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from robustkit import paths
from robustkit.data.base import ImageDataset
from robustkit.defense import Defense
from robustkit.threats import DEFAULT_NORM
from robustkit.weights.cache import defense_departures, departures, revision_tag
from robustkit.weights.checkpoint import read_record

# training settings `robustkit train` takes as flags (the others only a suite's `train:` sets)
_TRAIN_FLAGS = {
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "optimizer": "--optimizer",
    "precision": "--precision",
    "n_train": "--n-train",
    "weights": "--weights",
    "seed": "--seed",
}
_DEFENSE_FLAGS = {"steps": "--steps", "step_size": "--step-size"}


def eps_text(eps: float) -> str:
    """ε as a user types it: ``8/255`` where it is a whole number of grey levels, else ``0.05``."""
    levels = eps * 255
    if abs(levels - round(levels)) < 1e-6 and round(levels) and abs(eps * 10_000 - round(eps * 10_000)) > 1e-6:
        return f"{round(levels)}/255"
    return f"{eps:g}"


def missing_hint(model_name: str, data: ImageDataset, defense: Defense | None, recipe: dict[str, Any] | None) -> str:
    """``make it with `robustkit train …`…; or evaluate one trained at another ε: --defense-eps 0.1``."""
    command, unflagged = train_command(model_name, data, defense, recipe)
    hint = f"make it with `{command}`"
    if unflagged:
        hint += f" (train sets no {', '.join(unflagged)}: run the suite without --no-train instead)"
    hint += ", or pass --checkpoint/--weights"
    if defense is not None and defense.trains_weights:
        others = _other_budgets(model_name, data, defense)
        found = f" (in the cache: {', '.join(others)})" if others else ""
        hint += f"; to evaluate a {defense.name} checkpoint trained at another ε, give it with --defense-eps{found}"
    return hint


def train_command(
    model_name: str, data: ImageDataset, defense: Defense | None, recipe: dict[str, Any] | None
) -> tuple[str, list[str]]:
    """The `robustkit train` command that writes (model, defense, recipe)'s cached checkpoint, and the
    settings it has no flag for (``["madry clean_weight=0.5"]``)."""
    trained = defense is not None and defense.trains_weights
    flags = [f"--model {model_name}", f"--dataset {data.info.name}"]
    unflagged = []
    if trained:
        flags += [f"--defense {defense.name}", f"--eps {eps_text(defense.eps)}"]
        flags += [f"--norm {defense.norm}"] if defense.norm != DEFAULT_NORM else []
        for key, value in defense_departures(defense).items():
            if key in _DEFENSE_FLAGS:
                flags.append(f"{_DEFENSE_FLAGS[key]} {eps_text(value) if key == 'step_size' else value}")
            else:
                unflagged.append(f"{defense.name} {key}={value}")
    for key, value in departures(model_name, defense if trained else None, recipe).items():
        if key == "augment":
            flags.append("--augment" if value else "--no-augment")
        elif key in _TRAIN_FLAGS:
            flags.append(f"{_TRAIN_FLAGS[key]} {value}")
        else:
            unflagged.append(f"{key}={value}")
    return f"robustkit train {' '.join(flags)}", unflagged


def _other_budgets(model_name: str, data: ImageDataset, defense: Defense) -> list[str]:
    """The ε (and norm, where not L∞) of the cached checkpoints of this model and defense."""
    untagged = paths.checkpoint_path(data.info.name, model_name, defense.name)  # <model>-<defense>, slugged
    pattern = glob.escape(str(untagged.with_suffix("")) + "-") + "*.safetensors"
    budgets, revision = [], revision_tag(model_name)
    for path in map(Path, sorted(glob.glob(pattern))):
        if revision and f"-{revision}" not in path.name:
            continue  # a checkpoint of the architecture before (``cache_path``)
        record = read_record(path)
        if record is None or record.model != model_name or record.defense != defense.name:
            continue
        settings = record.defense_settings or {}
        if "eps" in settings:
            norm = settings.get("norm", DEFAULT_NORM)
            budgets.append(eps_text(float(settings["eps"])) + ("" if norm == DEFAULT_NORM else f" ({norm})"))
    return list(dict.fromkeys(budgets))
