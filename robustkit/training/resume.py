"""The resume file: training's whole state, written after every epoch and (``checkpoint_every``) every N
steps inside one, so a killed run continues from minutes ago and ends with the weights it would have had.

What is saved: model, optimiser, LR scheduler, the guard's state, the history, and the position (the
epoch and the steps of it already taken, with the epoch's running sums). No random-generator state is
needed: the epoch's data order comes from (seed, epoch) and every draw of a step (augmentation, the
defense's inner attack, dropout) from generators keyed by (seed, epoch, step, rank), so the position
fixes what every rank draws next. Tensors and plain values only, so it loads with ``weights_only=True``;
written to a temporary file and renamed, so a kill mid-write leaves the previous state whole.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustkit.errors import CheckpointError


@dataclass
class TrainState:
    """Where a run stands: ``step`` steps of ``epoch`` (0-based) are done; step 0 is an epoch's start."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: bool = False  # a defense's guard ended training
    sums: list[float] = field(default_factory=lambda: [0.0] * 4)  # the epoch's sums so far, over all ranks
    seconds: float = 0.0  # the epoch's training time so far
    run_seconds: float = 0.0  # the whole run's training time so far, every process before this one included


def architecture(model: nn.Module) -> str:
    """Names and shapes of the model's tensors: a resume file of another model fails on this, in one line."""
    shapes = [f"{name}:{tuple(t.shape)}" for name, t in model.state_dict().items()]
    return hashlib.sha256("\n".join(shapes).encode()).hexdigest()[:16]


def save_state(
    path: Path, state: TrainState, settings: dict[str, Any], model: nn.Module, optimizer, scheduler, guard: Any = None
) -> None:
    """Write ``state`` atomically; ``settings`` (JSON) must match for a later ``load_state``."""
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "next_epoch": state.epoch,
        "step": state.step,
        "sums": list(state.sums),
        "seconds": state.seconds,
        "run_seconds": state.run_seconds,
        "history": state.history,
        "stopped": state.stopped,
        "settings": json.dumps({**settings, "model": architecture(model)}, sort_keys=True),
        "guard": guard.state_dict() if hasattr(guard, "state_dict") else None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_state(
    path: Path, settings: dict[str, Any], model: nn.Module, optimizer, scheduler, guard: Any = None
) -> TrainState | None:
    """Restore model, optimiser, scheduler and guard from ``path`` (None when there is no file).

    A file made with other settings or for another model is a ``CheckpointError`` naming what differs.
    """
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        saved = json.loads(payload["settings"])
    except Exception as err:
        raise CheckpointError(
            f"cannot resume from {path} ({type(err).__name__}: {err}); delete it to start over"
        ) from None
    wanted = json.loads(json.dumps({**settings, "model": architecture(model)}))  # tuples → lists, as saved
    changed = sorted(k for k in wanted.keys() | saved.keys() if wanted.get(k) != saved.get(k))
    if changed:
        raise CheckpointError(
            f"{path} was made with other settings ({', '.join(changed)}); "
            "resume with the same ones, or drop --resume to start over"
        )
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        if payload["guard"] is not None and hasattr(guard, "load_state_dict"):
            guard.load_state_dict(payload["guard"])
    except Exception as err:
        raise CheckpointError(
            f"cannot resume from {path} ({type(err).__name__}: {err}); delete it to start over"
        ) from None
    return TrainState(
        epoch=int(payload["next_epoch"]),
        step=int(payload["step"]),
        history=list(payload["history"]),
        stopped=bool(payload["stopped"]),
        sums=[float(s) for s in payload["sums"]],
        seconds=float(payload["seconds"]),
        run_seconds=float(
            payload.get("run_seconds", sum(r["seconds"] for r in payload["history"]) + payload["seconds"])
        ),
    )  # files of older versions: the epochs' own times
