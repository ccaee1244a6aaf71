"""robustkit: adversarial-robustness benchmarking: attacks, defenses, models and leaderboards."""

from __future__ import annotations

from typing import Any

from robustkit.version import __version__


def get_model(name: str, info: Any, **kwargs: Any):
    """Build a registered model for a data set (see ``robustkit.models.get_model``)."""
    from robustkit.models import get_model as build

    return build(name, info, **kwargs)


def get_dataset(name: str = "fashion-mnist", **kwargs: Any):
    """Build a registered data set (see ``robustkit.data.get_dataset``)."""
    from robustkit.data import get_dataset as build

    return build(name, **kwargs)


def get_attack(name: str, **kwargs: Any):
    """Build a registered attack from its settings; ``None`` values keep the attack's defaults."""
    from robustkit.registry import ATTACKS

    return ATTACKS.build(name, **kwargs)


def get_defense(name: str, **kwargs: Any):
    """Build a registered defense from its settings; ``None`` values keep the defense's defaults."""
    from robustkit.registry import DEFENSES

    return DEFENSES.build(name, **kwargs)


def __getattr__(name: str) -> Any:
    """``robustkit.evaluate_model``, its ``Report`` and option objects, imported on first use so ``import robustkit`` stays light."""
    if name in ("evaluate_model", "Report", "ModelOptions", "CraftOptions", "RunOptions"):
        from robustkit.evaluation import api as model_eval

        return getattr(model_eval, name)
    if name == "evaluate_model_corruptions":
        from robustkit.evaluation.corruption_run import evaluate_model_corruptions

        return evaluate_model_corruptions
    raise AttributeError(f"module 'robustkit' has no attribute '{name}'")


__all__ = [
    "CraftOptions",
    "ModelOptions",
    "Report",
    "RunOptions",
    "__version__",
    "evaluate_model",
    "evaluate_model_corruptions",
    "get_attack",
    "get_dataset",
    "get_defense",
    "get_model",
]
