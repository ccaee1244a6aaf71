"""``certify_model``: randomized-smoothing certification of a model on the test subset, as one call.

Obtain the base model through the one resolver (a name, its defense and weights, or any ``nn.Module``),
run CERTIFY on the seeded subset, optionally SmoothAdv's attack on the same smoothed classifier, and
return a ``CertifyReport`` whose ``record`` holds the per-sample radii, the curve with its intervals,
throughput and the soundness flag. ``robustkit certify`` and the suite runner are thin callers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustkit.certification.curve import (
    certified_accuracy,
    correct_radii,
    default_radii,
)
from robustkit.certification.empirical import (
    EmpiricalPoint,
    SmoothAdv,
    attack_radii,
    soundness_flags,
)
from robustkit.certification.smoothing import Certificate, Smoothing, certify
from robustkit.data import get_dataset
from robustkit.data.base import ImageDataset
from robustkit.device import resolve_device
from robustkit.errors import ConfigError
from robustkit.models import model_name
from robustkit.progress import progress_bar
from robustkit.registry import DEFENSES
from robustkit.results.intervals import Interval
from robustkit.weights.checkpoint import weights_sha256
from robustkit.weights.resolve import Provenance, resolve_model


@dataclass
class CertifyReport:
    """A certification run: the per-image certificate, the curve, the empirical side, and the record."""

    record: dict[str, Any]
    certificate: Certificate
    labels: torch.Tensor  # N int64
    curve: list[tuple[float, float, Interval]]  # (radius, certified accuracy, 95 % interval)
    empirical: list[EmpiricalPoint] = field(default_factory=list)  # SmoothAdv on the same smoothed classifier
    flags: list[str] = field(default_factory=list)  # certified above empirical beyond chance: a bug signal

    @property
    def radii_correct(self) -> list[float | None]:
        return correct_radii(
            self.certificate.radius.tolist(), self.certificate.prediction.tolist(), self.labels.tolist()
        )


def certify_model(
    model: str | nn.Module,
    dataset: str | ImageDataset = "fashion-mnist",
    *,
    smoothing: Smoothing | None = None,
    n_samples: int = 100,
    seed: int = 0,
    radii: list[float] | None = None,
    attack: SmoothAdv | None = None,
    defense: str = "none",
    defense_settings: dict[str, Any] | None = None,
    checkpoint: str | Path | None = None,
    weights: str | None = None,
    no_train: bool = False,
    device: str | torch.device = "auto",
    data_dir: str | Path | None = None,
    progress: bool = True,
) -> CertifyReport:
    """Certify ``model`` (a registered name or an ``nn.Module`` on [0, 1] pixels) by randomized smoothing.

    ``smoothing`` [σ 0.25, n0 100, n 10 000, α 0.001; ``Smoothing.paper()`` for n = 100 000]; ``radii``
    [0, 0.25, … up to the largest certifiable]; ``attack``: also run SmoothAdv at those radii > 0.
    """
    smoothing = smoothing or Smoothing()
    data = dataset if isinstance(dataset, ImageDataset) else get_dataset(dataset, data_dir=data_dir)
    data.test.choose(n_samples, seed=seed)  # a bad n_samples is said before any training
    net, provenance = _base_model(model, data, device, defense, defense_settings or {}, checkpoint, weights, no_train)
    label = model if isinstance(model, str) else model_name(model)
    return certify_loaded(
        net,
        provenance,
        data,
        smoothing=smoothing,
        n_samples=n_samples,
        seed=seed,
        radii=radii,
        attack=attack,
        progress=progress,
        about={"model": label, "defense": defense, "defense_settings": defense_settings or {}},
    )


def certify_loaded(
    net: nn.Module,
    provenance: Provenance,
    data: ImageDataset,
    *,
    smoothing: Smoothing,
    n_samples: int,
    seed: int,
    radii: list[float] | None,
    attack: SmoothAdv | None,
    progress: bool,
    about: dict[str, Any],
) -> CertifyReport:
    """The certification itself, on a model already obtained (``certify_model`` and the suite runner call it);
    ``about`` (model, defense, defense_settings) goes into the record as it is."""
    radii = sorted(default_radii(smoothing.max_radius) if radii is None else radii)
    if any(not math.isfinite(r) or r < 0 for r in radii):
        raise ConfigError(f"radii must be finite and ≥ 0, got {radii}")
    chosen = data.test.choose(n_samples, seed=seed)
    positions = torch.arange(len(data.test)) if chosen is None else chosen
    subset = data.test.subset(n_samples, seed=seed).load()
    device = next(net.parameters()).device
    x, y, index = subset.images.to(device), subset.labels.to(device), positions.to(device)
    total = len(x) * (smoothing.n0 + smoothing.n)
    with progress_bar(total=total, enabled=progress, desc="certify", unit="draw", unit_scale=True) as bar:
        cert = certify(net, x, index, smoothing, seed=seed, tick=bar.update)
    report = CertifyReport({}, cert, y.cpu(), [])
    report.curve = certified_accuracy(report.radii_correct, radii)
    if attack is not None:
        report.empirical = _empirical(
            attack,
            net,
            x,
            y,
            index,
            smoothing,
            seed,
            attack_radii(radii, smoothing.max_radius),
            progress,
            report.radii_correct,
        )
        report.flags = soundness_flags(report.curve, report.empirical)
    report.record = _record(report, about, data, smoothing, attack, seed, provenance, positions)
    return report


def _base_model(model, data, device, defense, settings, checkpoint, weights, no_train) -> tuple[nn.Module, Provenance]:
    """The base classifier f, under its defense's inference-time part, and where its weights come from."""
    chosen = None if defense == "none" else DEFENSES.build(defense, **settings)
    if isinstance(model, nn.Module):
        net = model.to(resolve_device(device)) if device != "auto" else model
        digest = weights_sha256(net.state_dict())
        return (chosen.wrap(net) if chosen else net), Provenance(
            f"in-memory module weights sha256 {digest}", weights_sha256=digest
        )
    found = resolve_model(
        model,
        data,
        device=resolve_device(device),
        defense=chosen,
        checkpoint=Path(checkpoint) if checkpoint else None,
        weights=weights,
        allow_train=not no_train,
    )
    return found.model, found.provenance


def _empirical(attack, net, x, y, index, smoothing, seed, radii, progress, radii_correct) -> list[EmpiricalPoint]:
    points = []
    with progress_bar(
        total=len(radii) * len(x) * attack.predict_n, enabled=progress, desc="smoothadv", unit="draw", unit_scale=True
    ) as bar:
        for r in radii:
            robust, broken = attack.evaluate(net, x, y, index, r, smoothing, seed=seed, tick=bar.update)
            certified = torch.tensor([c is not None and c >= r for c in radii_correct], dtype=torch.bool)
            points.append(
                EmpiricalPoint(r, int(robust.sum()), int((~broken).sum()), len(x), int((certified & broken).sum()))
            )
    return points


def _record(
    report: CertifyReport,
    about: dict[str, Any],
    data: ImageDataset,
    smoothing: Smoothing,
    attack: SmoothAdv | None,
    seed: int,
    provenance: Provenance,
    positions: torch.Tensor,
) -> dict[str, Any]:
    """One reviewable row: settings, weights, the curve with intervals, throughput, and every image's certificate."""
    from robustkit.results.records import run_metadata

    cert, n = report.certificate, len(report.labels)
    draws_per_image = smoothing.n0 + smoothing.n
    radius = [None if math.isnan(r) else r for r in cert.radius.tolist()]
    return {
        "dataset": data.info.name,
        **about,
        **provenance.record(),
        "n": n,
        "seed": seed,
        "smoothing": smoothing.settings(),
        "max_radius": smoothing.max_radius,
        "certified": [{"radius": r, "accuracy": a, "low": i.low, "high": i.high} for r, a, i in report.curve],
        "attack": None if attack is None else {"name": "smoothadv", "norm": "l2", **attack.settings()},
        "empirical": [
            {
                "radius": p.radius,
                "accuracy": p.accuracy,
                "low": p.interval.low,
                "high": p.interval.high,
                "unbroken": p.unbroken,
                "contradicted": p.contradicted,
            }
            for p in report.empirical
        ],
        "flags": report.flags,
        "abstained": int(cert.abstained.sum()),
        "seconds": cert.seconds,
        "images_per_second": n / cert.seconds,
        "draws_per_second": cert.forward_passes / cert.seconds,
        "forward_limit_draws_per_second": cert.forward_limit,
        "forward_limit_images_per_second": cert.forward_limit / draws_per_image,
        "samples": {
            "index": positions.tolist(),
            "label": report.labels.tolist(),
            "prediction": cert.prediction.tolist(),
            "radius": radius,
            "p_lower": cert.p_lower.tolist(),
            "top_count": cert.top_count.tolist(),
        },
        **{k: v for k, v in run_metadata("cpu", seed).items() if k in ("robustkit_version", "created")},
    }
