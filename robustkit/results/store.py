"""The results store: one SQLite row per finished cell, committed as soon as the cell ends.

SQLite (standard library) in WAL mode: a run killed at any moment, even by ``kill -9``, leaves every
committed cell intact and no half-written one, so a restart skips exactly the finished cells.
Per-sample outcomes (clean correct, robust) are kept as packed bits so the worst case over attacks
can be recomputed from the store alone; several stores (shards) merge by cell key.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from robustkit.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

_COLUMNS = {
    "key": "TEXT PRIMARY KEY", "suite": "TEXT", "dataset": "TEXT", "entry": "TEXT", "model": "TEXT",
    "defense": "TEXT", "checkpoint": "TEXT", "checkpoint_sha256": "TEXT", "attack": "TEXT", "norm": "TEXT",
    "eps": "REAL", "settings": "TEXT", "n_samples": "INTEGER", "sample_seed": "INTEGER", "n": "INTEGER",
    "clean_accuracy": "REAL", "clean_accuracy_low": "REAL", "clean_accuracy_high": "REAL",  # its 95 % interval
    "robust_accuracy": "REAL", "robust_accuracy_low": "REAL", "robust_accuracy_high": "REAL",
    "attack_success_rate": "REAL", "attack_success_rate_low": "REAL", "attack_success_rate_high": "REAL",
    "median_norm": "REAL",
    "n_unverified": "INTEGER", "seconds": "REAL", "extra": "TEXT", "device": "TEXT", "seed": "INTEGER",
    "robustkit_version": "TEXT", "torch_version": "TEXT", "created": "TEXT", "clean_correct": "BLOB", "robust": "BLOB",
    "source": "TEXT", "source_checkpoint_sha256": "TEXT",  # transfer cells: the entry the examples were crafted on
    "training": "TEXT",  # the checkpoint's record in brief (architecture, defense, epochs, time): the entry's card
    "examples": "BLOB",  # a small PNG of clean over adversarial examples (a few the attack broke)
    "weights": "TEXT",  # where the weights come from: "file PATH sha256 …" or a library's name and version
    "weights_sha256": "TEXT",  # of the tensors alone (what keys the cell); checkpoint_sha256 is the whole file's
}  # fmt: skip # rows grouped: docs/gen_reference.py gives a line's comment to every column on it
_CHECK_COLUMNS = {
    "key": "TEXT PRIMARY KEY",
    "suite": "TEXT",
    "entry": "TEXT",
    "checkpoint_sha256": "TEXT",
    "norm": "TEXT",
    "eps": "REAL",
    "n": "INTEGER",
    "summary": "TEXT",
    "details": "TEXT",
    "seconds": "REAL",
    "created": "TEXT",
    "weights_sha256": "TEXT",
}
# one row per randomized-smoothing certification of an entry (``robustkit.certification``): its curve, the
# empirical attack on the same smoothed classifier, and every image's certificate (JSON)
_CERTIFIED_COLUMNS = {
    "key": "TEXT PRIMARY KEY",
    "suite": "TEXT",
    "dataset": "TEXT",
    "entry": "TEXT",
    "model": "TEXT",
    "defense": "TEXT",
    "defense_settings": "TEXT",
    "checkpoint": "TEXT",
    "checkpoint_sha256": "TEXT",
    "weights_sha256": "TEXT",
    "weights": "TEXT",
    "n": "INTEGER",
    "seed": "INTEGER",
    "smoothing": "TEXT",
    "max_radius": "REAL",
    "certified": "TEXT",
    "attack": "TEXT",
    "empirical": "TEXT",
    "flags": "TEXT",
    "abstained": "INTEGER",
    "seconds": "REAL",
    "images_per_second": "REAL",
    "draws_per_second": "REAL",
    "forward_limit_draws_per_second": "REAL",
    "forward_limit_images_per_second": "REAL",
    "samples": "TEXT",
    "robustkit_version": "TEXT",
    "created": "TEXT",
}
_CORRUPTION_COLUMNS = {
    "key": "TEXT PRIMARY KEY",
    "suite": "TEXT",
    "dataset": "TEXT",
    "entry": "TEXT",
    "model": "TEXT",
    "defense": "TEXT",
    "checkpoint_sha256": "TEXT",
    "weights_sha256": "TEXT",
    "n": "INTEGER",
    "sample_seed": "INTEGER",
    "source": "TEXT",
    "clean_accuracy": "REAL",
    "mean_corruption_accuracy": "REAL",
    "mean_corruption_accuracy_low": "REAL",
    "mean_corruption_accuracy_high": "REAL",
    "details": "TEXT",
    "seconds": "REAL",
    "created": "TEXT",
    "robustkit_version": "TEXT",
}
TABLES = {
    "cells": _COLUMNS,
    "checks": _CHECK_COLUMNS,
    "certified": _CERTIFIED_COLUMNS,
    "corruptions": _CORRUPTION_COLUMNS,
}
# one row per evaluated cell; one per gradient-masking check run; one per entry's certification; one per entry's
# corruption run (its bits in details)
# A cell's key leaves out the suite's name, so suites share cells and a row's ``suite`` names only the
# suite that evaluated it first; this table says which suites each cell and check run belongs to.
_TIMEOUT = 60  # seconds a process waits for another's write (a shard's, a torchrun rank's) before failing
_MEMBERS = "CREATE TABLE IF NOT EXISTS members (suite TEXT, key TEXT, PRIMARY KEY (suite, key))"


def pack(mask: Tensor) -> bytes:
    return np.packbits(mask.cpu().numpy().astype(bool)).tobytes()


def unpack(blob: bytes, n: int) -> Tensor:
    """The ``n`` per-sample booleans ``pack`` stored, as a tensor."""
    import torch  # here, not above: reading a store (a leaderboard) needs no torch

    return torch.from_numpy(unpack_bits(blob, n))


def unpack_bits(blob: bytes, n: int) -> np.ndarray:
    """``unpack`` as a NumPy array: what a leaderboard reads, without torch."""
    return np.unpackbits(np.frombuffer(blob, dtype=np.uint8))[:n].astype(bool)


class ResultStore:
    """``with ResultStore(path) as store: store.put(row)``; ``store.has(key)``; ``store.frame()``."""

    def __init__(self, path: str | Path, *, read_only: bool = False):
        """Open (or make) a store; an older one gains today's columns. ``read_only`` leaves the file byte for
        byte as it is (a published store read by a leaderboard or a test): no table is made, no column
        added, and an older store's missing columns read as null."""
        self.path = Path(path)
        try:
            if read_only:  # not SQLite's mode=ro: a read-only connection leaves a WAL store's -wal/-shm files behind
                self._db = sqlite3.connect(self.path, timeout=_TIMEOUT)
                self._db.execute("PRAGMA query_only = ON")
                self._db.execute("SELECT 1 FROM sqlite_master").fetchone()  # a file that is not a store fails here
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=_TIMEOUT)
            _use_wal(self._db)
            with self._writing():
                for table, columns in TABLES.items():
                    self._db.execute(
                        f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(f'{k} {v}' for k, v in columns.items())})"
                    )
                    have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                    for name in columns.keys() - have:  # a store written by an older robustkit gains the new columns
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {columns[name]}")
        except sqlite3.DatabaseError as err:
            raise ConfigError(f"{self.path} is not a robustkit results store ({err})") from None

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A transaction that takes the write lock first (waiting up to the timeout for it).

        ``CREATE TABLE IF NOT EXISTS`` reads before it writes; if another process (a shard, a torchrun
        rank) commits in between, SQLite fails the upgrade at once with 'database is locked' instead of
        waiting, so two processes opening one new store could fail. Locking first makes them queue.
        """
        self._db.execute("BEGIN IMMEDIATE")
        with self._db:  # the connection commits, or rolls back on an exception
            yield

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def has(self, key: str, table: str = "cells") -> bool:
        return self._db.execute(f"SELECT 1 FROM {_table(table)} WHERE key = ?", (key,)).fetchone() is not None

    def put(self, row: dict[str, Any], table: str = "cells") -> None:
        """Insert (or replace) one finished cell (or check run) and commit it at once."""
        unknown = set(row) - set(TABLES[_table(table)])
        if unknown:
            raise ValueError(f"not {table} columns: {sorted(unknown)}")
        names = list(row)
        values = [
            json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else v for v in row.values()
        ]
        self._db.execute(
            f"INSERT OR REPLACE INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", values
        )
        self._db.commit()

    def frame(self, table: str = "cells") -> pd.DataFrame:
        """Every row, in today's columns (null where an older store, read as it is, lacks one; a newer
        one's own columns last); outcome bits stay bytes (``unpack`` them with ``n``)."""
        columns = list(TABLES[_table(table)])
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is None:
            return pd.DataFrame(columns=columns)
        frame = pd.read_sql_query(f"SELECT * FROM {table} ORDER BY created, key", self._db)
        return frame.reindex(columns=[*columns, *(c for c in frame.columns if c not in columns)])

    def rekey(self, old: str, new: str, table: str = "cells", **columns: Any) -> bool:
        """Move the row stored under ``old`` to ``new``, setting ``columns`` (and its suites' membership);
        False (nothing done) where there is no such row or ``new`` is taken."""
        if old == new or not self.has(old, table) or self.has(new, table):
            return False
        with self._writing():
            names = ["key", *columns]
            self._db.execute(
                f"UPDATE {_table(table)} SET {', '.join(f'{k} = ?' for k in names)} WHERE key = ?",
                [new, *columns.values(), old],
            )
            if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'members'").fetchone() is not None:
                self._db.execute("UPDATE OR IGNORE members SET key = ? WHERE key = ?", (new, old))
        return True

    def add_members(self, suite: str, keys: Iterable[str]) -> None:
        """Record that these cells and check runs belong to ``suite`` (also those it reused from another)."""
        with self._writing():
            self._db.execute(_MEMBERS)  # created on first write, so reading an older store leaves its file as it was
            self._db.executemany("INSERT OR IGNORE INTO members VALUES (?, ?)", [(suite, k) for k in keys])

    def members(self) -> pd.DataFrame:
        """``suite``, ``key`` pairs (none in a store written before suites recorded their cells)."""
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'members'").fetchone() is None:
            return pd.DataFrame({"suite": pd.Series(dtype=str), "key": pd.Series(dtype=str)})
        return pd.read_sql_query("SELECT suite, key FROM members ORDER BY suite, key", self._db)


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch a store to WAL mode, retrying: the switch needs the file to itself, and SQLite answers
    'database is locked' at once, not after the timeout, while another process opens the new file."""
    deadline = time.monotonic() + _TIMEOUT
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _table(name: str) -> str:
    if name not in TABLES:
        raise ValueError(f"no table '{name}' in a results store (have {', '.join(TABLES)})")
    return name


def weights_identity(rows: pd.DataFrame) -> pd.Series:
    """Per row, which weights it scored: their digest, else (rows stored before it was recorded, named
    weights) the file's SHA-256. Two files of one training's weights are one identity."""
    digest = rows["weights_sha256"] if "weights_sha256" in rows else pd.Series(None, index=rows.index, dtype=object)
    return digest.fillna(rows["checkpoint_sha256"])


def read_stores(paths: Iterable[str | Path], table: str = "cells") -> pd.DataFrame:
    """All rows of one table (or ``"members"``) of several stores (shards) in one frame; a row present
    twice is kept once. The files are only read (an older store is not upgraded)."""
    frames = []
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f"results store {path} does not exist")
        with ResultStore(path, read_only=True) as store:
            frames.append(store.members() if table == "members" else store.frame(table))
    if not frames:
        raise ConfigError("name at least one results store")
    frame = pd.concat(frames, ignore_index=True)
    unique = ["suite", "key"] if table == "members" else "key"
    return frame.drop_duplicates(unique, keep="last").reset_index(drop=True)
