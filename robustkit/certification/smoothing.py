"""Randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019): CERTIFY and PREDICT of g(x) = argmax_c P(f(x + ε) = c).

ε ~ N(0, σ² I), not clipped to [0, 1] (the guarantee is for the Gaussian, as in the paper). CERTIFY guesses
the top class c_A from n0 draws, counts it in n fresh draws, bounds p_A below at confidence 1 − α
(one-sided Clopper–Pearson) and certifies the L2 radius σ·Φ⁻¹(p_A_lower), abstaining where the bound is
≤ 1/2. PREDICT returns the top class of n draws where a binomial test of its count against the runner-up's
rejects a tie at α, else abstains.

Noise is the sample's: draws come in blocks of ``NOISE_BLOCK``, each from a generator seeded by (seed,
the image's index in the evaluation set, the phase, the block), so a count does not depend on which
images share a batch or on how many draws go through the model at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import torch
from torch import Tensor, nn

from robustkit.errors import ConfigError
from robustkit.modes import eval_mode
from robustkit.per_sample_random import mix_int
from robustkit.results.intervals import lower_confidence_bound

ABSTAIN = -1  # the prediction where the smoothed classifier abstains
NOISE_BLOCK = 250  # draws per generator seed: fixed, so no batch size changes the noise


class Phase(IntEnum):
    """Which draws: each phase has noise of its own, so PREDICT never reuses CERTIFY's draws."""

    SELECT = 0  # CERTIFY's n0 draws that guess c_A
    ESTIMATE = 1  # CERTIFY's n draws that bound p_A
    PREDICT = 2
    ATTACK = 3  # the empirical attack's expectation over noise


@dataclass(frozen=True, kw_only=True)
class Smoothing:
    """The smoothed classifier's settings; the default answers in minutes on a CPU, ``paper`` is Cohen et al.'s."""

    sigma: float = 0.25  # noise standard deviation, pixels
    n0: int = 100  # selection draws
    n: int = 10_000  # estimation draws (the paper: 100 000)
    alpha: float = 0.001  # the certificate fails with probability at most α
    batch_size: int = 1000  # draws per forward pass (memory, not results)

    def __post_init__(self) -> None:
        if (
            isinstance(self.sigma, bool)
            or not isinstance(self.sigma, (int, float))
            or not math.isfinite(self.sigma)
            or self.sigma <= 0
        ):
            raise ConfigError(f"smoothing: sigma must be a finite number > 0, got {self.sigma!r}")
        for name in ("n0", "n", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"smoothing: {name} must be a whole number ≥ 1, got {value!r}")
        if not isinstance(self.alpha, (int, float)) or not 0 < self.alpha < 0.5:
            raise ConfigError(f"smoothing: alpha must be in (0, 0.5), got {self.alpha!r}")

    @classmethod
    def paper(cls, sigma: float = 0.25, **overrides) -> Smoothing:
        """Cohen et al.'s settings: n0 = 100, n = 100 000, α = 0.001."""
        return cls(**{"sigma": sigma, "n0": 100, "n": 100_000, "alpha": 0.001, **overrides})

    @property
    def max_radius(self) -> float:
        """The largest radius n draws can certify: all n draws on c_A give p_A_lower = α^(1/n)."""
        from scipy.special import ndtri

        return self.sigma * float(ndtri(self.alpha ** (1 / self.n)))

    def settings(self) -> dict[str, float | int]:
        return {"sigma": self.sigma, "n0": self.n0, "n": self.n, "alpha": self.alpha}


@dataclass(frozen=True)
class Certificate:
    """CERTIFY's answer per image (N rows)."""

    prediction: Tensor  # N int64: c_A, or ABSTAIN
    radius: Tensor  # N float64: certified L2 radius, NaN where abstaining
    p_lower: Tensor  # N float64: the lower confidence bound on p_A
    top_count: Tensor  # N int64: draws of the n that gave c_A
    forward_passes: int  # draws through the base model, selection and estimation
    seconds: float
    forward_seconds: float  # of which in the base model's forward passes: the ceiling on the rate, measured in the run

    @property
    def forward_limit(self) -> float:
        """Draws per second the forward passes alone allow, under this run's load (a GPU synchronised per batch)."""
        return self.forward_passes / self.forward_seconds

    @property
    def abstained(self) -> Tensor:
        return self.prediction == ABSTAIN


Tick = Callable[[int], object]  # told the draws done, e.g. a progress bar's ``update``


@dataclass
class Clock:
    """Seconds spent in the base model's forward passes, summed over ``class_counts`` calls."""

    seconds: float = 0.0


def noise_seed(seed: int, index: int, phase: int, block: int) -> int:
    """The generator seed of one block of one image's draws (splitmix64 of the parts, as ``per_sample_random``)."""
    return mix_int(mix_int(mix_int(int(seed)) ^ int(index)) ^ ((int(phase) << 40) | int(block)))


def noise(x: Tensor, index: int, *, sigma: float, seed: int, phase: int, start: int, count: int) -> Tensor:
    """Draws ``start`` … ``start + count`` of one image's noise (count × x.shape), whole blocks generated."""
    pieces, block = [], start // NOISE_BLOCK
    while block * NOISE_BLOCK < start + count:
        generator = torch.Generator(device=x.device).manual_seed(noise_seed(seed, index, phase, block))
        pieces.append(torch.randn((NOISE_BLOCK, *x.shape), generator=generator, device=x.device, dtype=torch.float32))
        block += 1
    offset = start - (start // NOISE_BLOCK) * NOISE_BLOCK
    return sigma * torch.cat(pieces)[offset : offset + count].to(x.dtype)


def class_counts(
    model: nn.Module,
    x: Tensor,
    index: Tensor,
    *,
    sigma: float,
    num: int,
    phase: int,
    seed: int,
    batch_size: int,
    tick: Tick | None = None,
    clock: Clock | None = None,
) -> Tensor:
    """N × classes: how often the base model said each class on ``num`` noisy copies of each image."""
    counts: Tensor | None = None
    for row in range(len(x)):
        for start in range(0, num, batch_size):
            take = min(batch_size, num - start)
            noisy = x[row] + noise(
                x[row], int(index[row]), sigma=sigma, seed=seed, phase=phase, start=start, count=take
            )
            started = time.perf_counter()
            logits = model(noisy)
            if clock is not None:
                if logits.is_cuda:
                    torch.cuda.synchronize(logits.device)
                clock.seconds += time.perf_counter() - started
            if counts is None:
                counts = torch.zeros(len(x), logits.shape[1], dtype=torch.long, device=x.device)
            counts[row] += torch.bincount(logits.argmax(1), minlength=counts.shape[1])
            if tick is not None:
                tick(take)
    return counts


def certify(
    model: nn.Module, x: Tensor, index: Tensor, smoothing: Smoothing, *, seed: int = 0, tick: Tick | None = None
) -> Certificate:
    """CERTIFY (Cohen et al., Algorithm 1 / ``core.py``) for every image of ``x``; ``index``: the images' indices
    in the evaluation set, which with ``seed`` fix their noise. The model is left in its own mode."""
    from scipy.special import ndtri

    start, clock = time.perf_counter(), Clock()
    common = {"sigma": smoothing.sigma, "seed": seed, "batch_size": smoothing.batch_size, "tick": tick, "clock": clock}
    with eval_mode(model), torch.inference_mode():
        guess = class_counts(model, x, index, num=smoothing.n0, phase=Phase.SELECT, **common).argmax(1)
        counts = class_counts(model, x, index, num=smoothing.n, phase=Phase.ESTIMATE, **common)
    top = counts.gather(1, guess[:, None])[:, 0].cpu()
    p_lower = torch.tensor(
        [lower_confidence_bound(k, smoothing.n, smoothing.alpha) for k in top.tolist()], dtype=torch.float64
    )
    certified = p_lower > 0.5
    radius = torch.where(certified, smoothing.sigma * torch.from_numpy(ndtri(p_lower.numpy())), torch.nan)
    prediction = torch.where(certified, guess.cpu(), ABSTAIN)
    return Certificate(
        prediction,
        radius,
        p_lower,
        top,
        len(x) * (smoothing.n0 + smoothing.n),
        time.perf_counter() - start,
        clock.seconds,
    )


def predict(
    model: nn.Module, x: Tensor, index: Tensor, smoothing: Smoothing, *, seed: int = 0, tick: Tick | None = None
) -> Tensor:
    """PREDICT (Cohen et al., Algorithm 1): per image the top class of n draws, or ABSTAIN where a two-sided
    binomial test of its count against the runner-up's (out of their sum, p = 1/2) has p-value > α."""
    from scipy.stats import binomtest

    with eval_mode(model), torch.inference_mode():
        counts = class_counts(
            model,
            x,
            index,
            sigma=smoothing.sigma,
            num=smoothing.n,
            phase=Phase.PREDICT,
            seed=seed,
            batch_size=smoothing.batch_size,
            tick=tick,
        ).cpu()
    top = counts.topk(2, dim=1)
    n_a, n_b = top.values[:, 0].tolist(), top.values[:, 1].tolist()
    sure = torch.tensor(
        [binomtest(a, a + b, 0.5).pvalue <= smoothing.alpha for a, b in zip(n_a, n_b, strict=False)], dtype=torch.bool
    )
    return torch.where(sure, top.indices[:, 0], ABSTAIN)
