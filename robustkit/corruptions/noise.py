"""Noise corruptions (Hendrycks & Dietterich 2019; Mu & Gilmer 2019): every draw per sample from
``SampleRandom``, so an image's corruption does not depend on its batch."""

from __future__ import annotations

import torch
from torch import Tensor

from robustkit.per_sample_random import SampleRandom


def gaussian_noise(x: Tensor, sigma: float, rng: SampleRandom) -> Tensor:
    """x + N(0, σ²) per element, clipped to [0, 1]."""
    return (x + sigma * rng.randn(*x.shape[1:]).to(x.device)).clamp(0, 1)


def shot_noise(x: Tensor, rate: float, rng: SampleRandom) -> Tensor:
    """Poisson(x·c)/c: photon counts at ``rate`` photons for a white pixel. Each sample's counts come from
    torch's Poisson sampler on a generator seeded by that sample's own random bits, so they depend on
    (seed, index) only."""
    seeds = rng.bits().cpu().tolist()
    lam = (x.double() * rate).cpu()
    counts = torch.stack(
        [torch.poisson(lam[i], generator=torch.Generator().manual_seed(s & (2**63 - 1))) for i, s in enumerate(seeds)]
    )
    return (counts / rate).to(x.dtype).to(x.device).clamp(0, 1)


def impulse_noise(x: Tensor, amount: float, rng: SampleRandom) -> Tensor:
    """scikit-image's salt & pepper: a share ``amount`` of the elements set to 0 or 1, half each."""
    hit, salt = rng.rand(*x.shape[1:]).to(x.device) < amount, rng.rand(*x.shape[1:]).to(x.device) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def speckle_noise(x: Tensor, sigma: float, rng: SampleRandom) -> Tensor:
    """x + x·N(0, σ²), clipped."""
    return (x + x * sigma * rng.randn(*x.shape[1:]).to(x.device)).clamp(0, 1)
