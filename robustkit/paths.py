"""Where robustkit keeps what it makes: ``$ROBUSTKIT_HOME`` (default ``~/.cache/robustkit``)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path


def home() -> Path:
    """The cache root; read on every call so tests and users can redirect it with the variable."""
    return Path(os.environ.get("ROBUSTKIT_HOME") or Path.home() / ".cache" / "robustkit").expanduser()


def data_root() -> Path:
    """Where downloaded data sets go when no ``--data-dir`` is given."""
    return home() / "data"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", text).strip("-")


def lock_path(target: Path) -> Path:
    """The lock file that guards writing ``target`` (one trainer per checkpoint): under the cache's
    ``locks/``, not beside the file, so a folder of checkpoints holds only checkpoints."""
    key = hashlib.sha256(str(Path(target).resolve()).encode()).hexdigest()[:12]
    return home() / "locks" / f"{Path(target).name}-{key}.lock"


def checkpoint_path(dataset: str, model: str, defense: str = "none", tag: str | None = None) -> Path:
    """The cached checkpoint for (dataset, model, defense[, tag such as the defense's ε])."""
    name = f"{_slug(model)}-{_slug(defense)}" + (f"-{_slug(tag)}" if tag else "")
    return home() / "checkpoints" / _slug(dataset) / f"{name}.safetensors"
