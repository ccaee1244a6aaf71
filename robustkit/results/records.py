"""Result records: one row per run in the results store's schema, appended to CSV, JSON or SQLite files."""

from __future__ import annotations

import base64
import json
import math
import os
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from robustkit.errors import ConfigError
from robustkit.results.store import TABLES, ResultStore
from robustkit.version import __version__

COLUMNS = list(TABLES["cells"])  # one schema for every run: a CSV, a JSON list and a results store hold the same rows


def run_metadata(device: torch.device | str, seed: int) -> dict[str, Any]:
    return {
        "device": str(device),
        "seed": seed,
        "robustkit_version": __version__,
        "torch_version": torch.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


OUTPUTS = (".csv", ".json", ".sqlite")


def check_outputs(paths: Iterable[str | Path]) -> list[Path]:
    """Refuse, before any work, an output that cannot take a record: an unknown suffix, a folder that
    cannot be written, or a file holding something else (other columns, not a list, not a results store)."""
    checked = []
    for path in map(Path, paths):
        if path.suffix not in OUTPUTS:
            raise ConfigError(
                f"--output must end in .csv or .json (records) or .sqlite (a results store), got {path.name}"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
                raise PermissionError("not writable")
            if path.exists() and path.stat().st_size:
                _check_existing(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, sqlite3.DatabaseError) as err:
            raise ConfigError(f"cannot append to {path}: {err}") from None
        checked.append(path)
    return checked


def _check_existing(path: Path) -> None:
    foreign = f"{path} holds something other than robustkit's records; write to a new file"
    if path.suffix == ".sqlite":
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'cells'").fetchone() is None:
                raise ConfigError(f"{path} is not a robustkit results store (no cells table); write to a new file")
    elif path.suffix == ".csv":
        columns = pd.read_csv(path, nrows=0).columns.tolist()
        if columns != COLUMNS:
            raise ConfigError(_older(path, [columns]) or foreign.replace("records", "records (other columns)"))
    else:
        try:
            records = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON ({err}); write to a new file") from None
        if not isinstance(records, list) or any(not isinstance(r, dict) or list(r) != COLUMNS for r in records):
            older = isinstance(records, list) and all(isinstance(r, dict) for r in records)
            raise ConfigError((older and _older(path, [list(r) for r in records])) or foreign)


def _older(path: Path, columns: list[list[str]]) -> str | None:
    """Why a file of an older robustkit's records (each row's columns a part of today's, in order) cannot
    take a new one; None for a file that holds something else. Rows of one file share one schema, so a
    row with more columns than its file would be read wrongly; a results store gains the new columns."""
    if not columns or any(not c or [k for k in COLUMNS if k in c] != c for c in columns):
        return None
    missing = [k for k in COLUMNS if any(k not in c for c in columns)]
    named = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    return (
        f"{path} holds records of an older robustkit, without today's columns {named}: write to a new file, "
        "or to a .sqlite results store (a store gains new columns)"
    )


def append_record(path: str | Path, row: dict[str, Any], checks: dict[str, Any] | None = None) -> Path:
    """Append one cell row (the results store's schema) to ``.csv``, ``.json`` (rewritten atomically) or a
    ``.sqlite`` store (with its check run, if any, and its suite membership, so a leaderboard can read it)."""
    path = check_outputs([path])[0]
    try:
        if path.suffix == ".sqlite":
            with ResultStore(path) as store:
                store.put(row)
                keys = [row["key"]]
                if checks is not None:
                    store.put(checks, "checks")
                    keys.append(checks["key"])
                store.add_members(row["suite"], keys)
        elif path.suffix == ".csv":
            header = not (path.exists() and path.stat().st_size)
            text = pd.DataFrame([text_row(row)], columns=COLUMNS).to_csv(index=False, header=header)
            with path.open("a") as f:  # one write: a reader never sees half a row
                f.write(text)
        else:
            records = json.loads(path.read_text()) if path.exists() and path.stat().st_size else []
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps([*records, text_row(row)], indent=1, allow_nan=False))
            os.replace(tmp, path)
    except OSError as err:
        raise ConfigError(f"cannot append to {path}: {err}") from None
    return path


def text_row(row: dict[str, Any]) -> dict[str, Any]:
    """A cell row as a CSV or JSON file holds it: the store's columns in its order, dicts as JSON text
    (as the store keeps them), outcome bits base64-encoded, no example strip (a PNG; kept in stores only)."""

    def text(key: str, value: Any) -> Any:
        if key == "examples" or value is None:
            return None
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        if isinstance(value, (dict, list)):
            return json.dumps(value, sort_keys=True, default=str)
        return None if isinstance(value, float) and not math.isfinite(value) else value

    return {k: text(k, row.get(k)) for k in COLUMNS}
