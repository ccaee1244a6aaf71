"""``robustkit list KIND [PATTERN]``: what each registry holds, with a line and the key settings."""

from __future__ import annotations

import inspect

import click

from robustkit.cli.table import echo_table
from robustkit.models import TORCHVISION_PREFIX
from robustkit.registry import ATTACKS, DATASETS, DEFENSES, MODELS, THREATS

_REGISTRIES = {"models": MODELS, "datasets": DATASETS, "attacks": ATTACKS, "defenses": DEFENSES, "threats": THREATS}
_PLUMBING = {"self", "info", "data_dir", "download"}  # arguments every entry of a kind takes


def summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""


def key_parameters(obj: object) -> str:
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return ""
    return ", ".join(
        f"{p.name}={p.default!r}" for p in params if p.name not in _PLUMBING and p.default is not inspect.Parameter.empty
    )


@click.command("list")
@click.argument("kind", type=click.Choice(sorted(_REGISTRIES)))
@click.argument("pattern", default="*")
def list_command(kind: str, pattern: str) -> None:
    """List registered models, datasets, attacks, defenses or threat models (PATTERN is a glob, e.g. 'resnet*')."""
    registry = _REGISTRIES[kind]
    rows = [[name, summary(registry.get(name)), key_parameters(registry.get(name))] for name in registry.list(pattern)]
    if kind == "models" and pattern == "*":
        rows.append([f"{TORCHVISION_PREFIX}<name>", "Any torchvision classifier, e.g. torchvision:mobilenet_v3_small",
                     "weights=None"])  # fmt: skip
        rows.append(["timm:<name>", "Any timm architecture (pip install 'robustkit[zoo]')", "weights=None"])
        rows.append(["robustbench:[L2/]<name>", "A RobustBench zoo model, its own weights (pip install 'robustkit[zoo]')", ""])
    if not rows:
        click.echo(f"no {kind} registered" + (f" matching '{pattern}'" if pattern != "*" else ""))
        return
    echo_table(["name", "description", "settings"], rows)
