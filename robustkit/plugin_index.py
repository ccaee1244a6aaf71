"""What the registries hold, known without importing a plugin (or torch): how ``robustkit list`` and the
leaderboard answer in well under a second.

``plugin_index.json`` keeps each built-in plugin's name, first docstring line and settings, and each
threat model's traits that leaderboards read. ``python -m robustkit.plugin_index`` writes it from the
live registries; ``tests/test_plugin_index.py`` fails when the two differ. Where a registry holds more
than its built-ins (third-party plugins in its entry-point group, or plugins registered in this
process), the live registry answers instead.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import os
from pathlib import Path
from typing import Any

from robustkit.registry import (
    ATTACKS,
    DATASETS,
    DEFENSES,
    DISABLE_AUTOLOAD_ENV,
    MODELS,
    THREATS,
    Registry,
    canonical_name,
)

REGISTRIES: dict[str, Registry] = {
    "models": MODELS,
    "datasets": DATASETS,
    "attacks": ATTACKS,
    "defenses": DEFENSES,
    "threats": THREATS,
}
# the ``ThreatModel`` class attributes that torch-free code (leaderboards, ``robustkit train --help``) reads
THREAT_TRAITS = (
    "family",
    "family_order",
    "clean_images",
    "budget_axis",
    "whole_budget",
    "default",
    "trains_defenses",
    "latex",
)
INDEX_FILE = Path(__file__).with_suffix(".json")
_PLUMBING = {"self", "info", "data_dir", "download"}  # arguments every entry of a kind takes


def entries(kind: str) -> list[dict[str, Any]]:
    """Per plugin of ``kind`` (``models``, ``attacks``…), sorted by name: ``name``, ``description``,
    ``settings`` (and a threat model's traits); for models also the model libraries' rows."""
    if REGISTRIES[kind].holds_only_builtins():
        return _stored()[kind]
    return live_entries(kind)


def builtin_entries(kind: str) -> list[dict[str, Any]]:
    """``entries`` of the built-in plugins alone, from the stored index (never imports a plugin)."""
    return _stored()[kind]


def find(kind: str, name: str) -> dict[str, Any] | None:
    """The entry registered as ``name`` (spelled any way the registry accepts), or None."""
    return next((e for e in entries(kind) if canonical_name(e["name"]) == canonical_name(name)), None)


def written_settings(settings: str) -> dict[str, str]:
    """An entry's ``settings`` as name → default as written: ``"steps=10, loss='ce'"`` → ``{"steps": "10", "loss": "'ce'"}``."""
    if not settings:
        return {}
    return {k.arg: ast.unparse(k.value) for k in ast.parse(f"f({settings})", mode="eval").body.keywords}


def setting_defaults(kind: str, name: str) -> dict[str, Any]:
    """The defaults of a built-in plugin's settings that are literals (``{}`` for one the index does not hold)."""
    entry = find(kind, name)
    defaults = {}
    for key, text in written_settings(entry["settings"] if entry else "").items():
        try:
            defaults[key] = ast.literal_eval(text)
        except ValueError:  # a default that is no literal (an object): never equal to a stored value
            continue
    return defaults


def live_entries(kind: str) -> list[dict[str, Any]]:
    """``entries`` read from the registry itself (imports its plugins)."""
    registry = REGISTRIES[kind]
    found = [describe(name, registry.get(name), traits=kind == "threats") for name in registry.list()]
    return found + _library_models() if kind == "models" else found


def describe(name: str, plugin: object, *, traits: bool = False) -> dict[str, Any]:
    """One entry: the name, the docstring's first line and the settings with their defaults."""
    doc = inspect.getdoc(plugin) or ""
    entry = {"name": name, "description": doc.splitlines()[0] if doc else "", "settings": _settings(plugin)}
    if isinstance(getattr(plugin, "access", None), str):  # an attack: what it reads of the model (a board says it)
        entry["access"] = plugin.access
    if callable(getattr(plugin, "paper", None)):  # an attack whose paper's settings are a named choice
        entry["paper"] = _paper(plugin)
    if traits:
        entry.update({trait: getattr(plugin, trait) for trait in THREAT_TRAITS})
        entry["family"] = entry["family"] or name  # a threat model without a family is a group of its own
    return entry


def _settings(plugin: object) -> str:
    try:
        params = inspect.signature(plugin).parameters.values()
    except (TypeError, ValueError):
        return ""
    return ", ".join(
        f"{p.name}={p.default!r}"
        for p in params
        if p.name not in _PLUMBING and p.default is not inspect.Parameter.empty
    )


def _paper(plugin: Any) -> str:
    """The settings of ``plugin.paper()`` that differ from the defaults, written as ``settings`` is."""
    default, paper = plugin(), plugin.paper()
    return ", ".join(
        f"{f.name}={getattr(paper, f.name)!r}"
        for f in dataclasses.fields(paper)
        if f.init and getattr(paper, f.name) != getattr(default, f.name)
    )


def _library_models() -> list[dict[str, Any]]:
    """What ``--model`` takes beyond the registry: any architecture of a model library."""
    from robustkit.models import TORCHVISION_PREFIX

    return [
        {
            "name": f"{TORCHVISION_PREFIX}<name>",
            "description": "Any torchvision classifier, e.g. torchvision:mobilenet_v3_small",
            "settings": "weights=None",
        },
        {
            "name": "timm:<name>",
            "description": "Any timm architecture (pip install 'robustkit[zoo]')",
            "settings": "weights=None",
        },
        {
            "name": "robustbench:[L2/]<name>",
            "description": "A RobustBench zoo model, its own weights (pip install 'robustkit[zoo]')",
            "settings": "",
        },
    ]


@functools.cache
def _stored() -> dict[str, list[dict[str, Any]]]:
    return json.loads(INDEX_FILE.read_text(encoding="utf-8"))


def build() -> dict[str, list[dict[str, Any]]]:
    """The index as the live registries give it, built-ins only (``ROBUSTKIT_DISABLE_PLUGIN_AUTOLOAD`` must be set)."""
    if not os.environ.get(DISABLE_AUTOLOAD_ENV):
        raise RuntimeError(f"set {DISABLE_AUTOLOAD_ENV}=1: the index holds the built-in plugins only")
    return {kind: live_entries(kind) for kind in REGISTRIES}


def text(index: dict[str, list[dict[str, Any]]]) -> str:
    return json.dumps(index, indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    os.environ[DISABLE_AUTOLOAD_ENV] = "1"
    INDEX_FILE.write_text(text(build()), encoding="utf-8")
    print(f"wrote {INDEX_FILE}")
