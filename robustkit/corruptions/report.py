"""What a corruption evaluation found: one bit per (corruption, severity) and image, and the figures
drawn from those bits alone (NumPy and SciPy only: a leaderboard reads them without torch).

Figures: accuracy per pair with its Clopper–Pearson interval; the mean corruption accuracy
(RobustBench's figure: the mean over every pair and image) with a percentile bootstrap over images;
the corruption error CE_c = Σ_s err_{s,c} / Σ_s err^{base}_{s,c} against a baseline model scored on the
same images and pairs, and mCE = mean_c CE_c (Hendrycks & Dietterich 2019).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robustkit.errors import ConfigError
from robustkit.results.intervals import Interval, bootstrap_mean_interval, proportion_interval


@dataclass
class CorruptionReport:
    """Per pair k: ``names[k]`` at ``severities[k]``; ``correct`` bool K×N, ``clean`` bool N, ``seconds`` K."""

    names: list[str]
    severities: list[int]
    correct: np.ndarray  # bool K × N: image n classified right under pair k
    clean: np.ndarray | None  # bool N; None where no clean images were scored (a folder read alone)
    seconds: np.ndarray  # float K: wall time of each pair (corrupting and classifying every image)
    source: str  # CIFAR-10-C, MNIST-C, or the folder read
    unavailable: dict[str, str] = field(default_factory=dict)  # corruptions left out, and why

    @property
    def n(self) -> int:
        return self.correct.shape[1]

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean.mean()) if self.clean is not None and self.n else float("nan")

    @property
    def mean_accuracy(self) -> float:
        """The mean corruption accuracy: over every pair and image."""
        return float(self.correct.mean()) if self.correct.size else float("nan")

    def mean_interval(self) -> Interval:
        """95 % percentile bootstrap of the mean over images (an image's pairs stay together)."""
        return bootstrap_mean_interval(self.correct.T.astype(float))

    def table(self) -> list[dict[str, Any]]:
        """One row per pair: corruption, severity, accuracy with its 95 % interval, seconds."""
        rows = []
        for k, (name, severity) in enumerate(zip(self.names, self.severities, strict=False)):
            hits = int(self.correct[k].sum())
            interval = proportion_interval(hits, self.n)
            rows.append(
                {
                    "corruption": name,
                    "severity": severity,
                    "accuracy": hits / self.n if self.n else None,
                    "accuracy_low": interval.low,
                    "accuracy_high": interval.high,
                    "seconds": float(self.seconds[k]),
                }
            )
        return rows

    def per_corruption(self) -> dict[str, float]:
        """Each corruption's accuracy over its severities."""
        return {name: float(self.correct[self._rows(name)].mean()) for name in dict.fromkeys(self.names)}

    def _rows(self, name: str) -> np.ndarray:
        return np.array([k for k, n in enumerate(self.names) if n == name])

    def corruption_errors(self, baseline: CorruptionReport) -> dict[str, float]:
        """CE_c = Σ_s err_{s,c} / Σ_s err^{base}_{s,c} per corruption (NaN where the baseline never errs)."""
        if (
            list(zip(self.names, self.severities, strict=False))
            != list(zip(baseline.names, baseline.severities, strict=False))
            or self.n != baseline.n
        ):
            raise ConfigError("mCE compares two models on the same corruptions, severities and images")
        errors = {}
        for name in dict.fromkeys(self.names):
            rows = self._rows(name)
            mine, base = (~self.correct[rows]).sum(), (~baseline.correct[rows]).sum()
            errors[name] = float(mine / base) if base else float("nan")
        return errors

    def mce(self, baseline: CorruptionReport) -> float:
        """mCE = mean over corruptions of CE_c (corruptions the baseline never errs on left out)."""
        values = [v for v in self.corruption_errors(baseline).values() if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The record's ``extra`` part: names, severities, the bits packed per pair, timings, what is left out."""
        return {
            "source": self.source,
            "names": self.names,
            "severities": self.severities,
            "n": self.n,
            "bits": [np.packbits(row).tobytes().hex() for row in self.correct],
            "clean_bits": None if self.clean is None else np.packbits(self.clean).tobytes().hex(),
            "seconds": [float(s) for s in self.seconds],
            "unavailable": self.unavailable,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CorruptionReport:
        n = int(d["n"])

        def unpack(text: str) -> np.ndarray:
            return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n].astype(bool)

        correct = np.stack([unpack(t) for t in d["bits"]]) if d["bits"] else np.zeros((0, n), dtype=bool)
        return cls(
            list(d["names"]),
            [int(s) for s in d["severities"]],
            correct,
            None if d.get("clean_bits") is None else unpack(d["clean_bits"]),
            np.asarray(d["seconds"], dtype=float),
            d["source"],
            dict(d.get("unavailable", {})),
        )
