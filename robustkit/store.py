"""The results store: one SQLite row per finished cell, committed as soon as the cell ends.

SQLite (standard library) in WAL mode: a run killed at any moment, even by ``kill -9``, leaves every
committed cell intact and no half-written one, so a restart skips exactly the finished cells.
Per-sample outcomes (clean correct, robust) are kept as packed bits so the worst case over attacks
can be recomputed from the store alone; several stores (shards) merge by cell key.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from robustkit.errors import ConfigError

_COLUMNS = {
    "key": "TEXT PRIMARY KEY", "suite": "TEXT", "dataset": "TEXT", "entry": "TEXT", "model": "TEXT",
    "defense": "TEXT", "checkpoint": "TEXT", "checkpoint_sha256": "TEXT", "attack": "TEXT", "norm": "TEXT",
    "eps": "REAL", "settings": "TEXT", "n_samples": "INTEGER", "sample_seed": "INTEGER", "n": "INTEGER",
    "clean_accuracy": "REAL", "robust_accuracy": "REAL", "attack_success_rate": "REAL", "median_norm": "REAL",
    "n_unverified": "INTEGER", "seconds": "REAL", "extra": "TEXT", "device": "TEXT", "seed": "INTEGER",
    "robustkit_version": "TEXT", "torch_version": "TEXT", "created": "TEXT", "clean_correct": "BLOB", "robust": "BLOB",
}  # fmt: skip


def pack(mask: Tensor) -> bytes:
    return np.packbits(mask.cpu().numpy().astype(bool)).tobytes()


def unpack(blob: bytes, n: int) -> Tensor:
    return torch.from_numpy(np.unpackbits(np.frombuffer(blob, dtype=np.uint8))[:n].astype(bool))


class ResultStore:
    """``with ResultStore(path) as store: store.put(row)``; ``store.has(key)``; ``store.frame()``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"CREATE TABLE IF NOT EXISTS cells ({', '.join(f'{k} {v}' for k, v in _COLUMNS.items())})")
            self._db.commit()
        except sqlite3.DatabaseError as err:
            raise ConfigError(f"{self.path} is not a robustkit results store ({err})") from None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def has(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM cells WHERE key = ?", (key,)).fetchone() is not None

    def put(self, row: dict[str, Any]) -> None:
        """Insert (or replace) one finished cell and commit it at once."""
        unknown = set(row) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"not store columns: {sorted(unknown)}")
        names = list(row)
        values = [json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else v for v in row.values()]
        self._db.execute(f"INSERT OR REPLACE INTO cells ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", values)
        self._db.commit()

    def frame(self) -> pd.DataFrame:
        """Every cell as a row; outcome bits stay bytes (``unpack`` them with ``n``)."""
        return pd.read_sql_query("SELECT * FROM cells ORDER BY created, key", self._db)


def read_stores(paths: Iterable[str | Path]) -> pd.DataFrame:
    """All cells of several stores (shards) in one frame; a cell present twice is kept once."""
    frames = []
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f"results store {path} does not exist")
        with ResultStore(path) as store:
            frames.append(store.frame())
    if not frames:
        raise ConfigError("name at least one results store")
    frame = pd.concat(frames, ignore_index=True)
    return frame.drop_duplicates("key", keep="last").reset_index(drop=True)
