"""Result records: one flat dict per run, appended to CSV or JSON files (tables are DataFrames of them)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from robustkit import __version__
from robustkit.errors import ConfigError


def file_sha256(path: str | Path | None, length: int = 16) -> str | None:
    """A short content hash that names exactly which weights were evaluated."""
    if path is None:
        return None
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def run_metadata(device: torch.device | str, seed: int) -> dict[str, Any]:
    return {
        "device": str(device),
        "seed": seed,
        "robustkit_version": __version__,
        "torch_version": torch.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def append_record(path: str | Path, record: dict[str, Any]) -> Path:
    """Append one record to ``.csv`` (header written once) or ``.json`` (a list, rewritten atomically)."""
    path = Path(path)
    try:
        return _append(path, record)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ConfigError(f"cannot append to {path}: {err}") from None


def _append(path: Path, record: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame = pd.DataFrame([record])
        if path.exists() and path.stat().st_size:
            columns = pd.read_csv(path, nrows=0).columns.tolist()
            if columns != frame.columns.tolist():
                raise ConfigError(f"{path} has other columns than this record; write to a new file")
            frame.to_csv(path, mode="a", header=False, index=False)
        else:
            frame.to_csv(path, index=False)
    elif path.suffix == ".json":
        try:
            records = json.loads(path.read_text()) if path.exists() and path.stat().st_size else []
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON ({err}); write to a new file") from None
        if not isinstance(records, list):
            raise ConfigError(f"{path} does not hold a JSON list of records")
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        tmp.write_text(json.dumps([*records, clean], indent=1, default=str, allow_nan=False))
        os.replace(tmp, path)
    else:
        raise ConfigError(f"--output must end in .csv or .json, got {path.name}")
    return path
