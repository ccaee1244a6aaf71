"""One-pixel (k-pixel) attack by differential evolution (Su, Vargas & Sakurai, 2017), vectorised.

Each candidate is k × (row, column, one value per channel). A generation of the whole batch's
population is a handful of large forward passes (chunked to ``max_batch`` images), with no Python
loop over images or candidates; an image leaves the population once one of its candidates fools
the model. Black-box: only the model's output probabilities are used, never gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from robustkit.attack import Attack, Perturbed
from robustkit.errors import ConfigError
from robustkit.losses import is_success
from robustkit.per_sample_random import SampleRandom
from robustkit.registry import ATTACKS
from robustkit.threats import L0, names


@ATTACKS.register
@dataclass(frozen=True, kw_only=True)
class OnePixel(Attack):
    """Differential-evolution pixel attack (Su et al. 2017): change at most ``eps`` pixels (default 1).

    Threat model: L0, ``eps`` = number of pixel positions that may change, each to any colour in [0, 1].
    Arguments: ``eps`` (pixels: 1, 3, 5…); ``population`` (100; the paper's 400); ``generations`` (10;
    the paper's 100); ``mutation`` (F = 0.5, DE/rand/1, no crossover, as in the paper); ``max_batch``
    (images per forward pass); ``seed``; ``precision`` (bf16: the search's passes under autocast,
    ~10× faster than fp32 on a CPU with bf16 units; every success is re-checked in float32; on a CPU
    without them fp32 may be faster). Fitness is the true-class probability (targeted: minus the
    target's), minimised; an image stops costing queries once fooled.
    Cost of the defaults: at most 100 × (10 + 1) = 1100 forward passes per image; ~107 s for 1000
    Fashion-MNIST images on smallcnn on 2 CPU cores with bf16 units (k = 1; fp32 took several times
    longer; ``generations=5`` halves the time and fools 2 points fewer).
    The paper's settings (400 × 100: 40 400 passes per image, ~37× the defaults) are
    ``OnePixel.paper(eps=…)``; from the command line ``--population 400 --generations 100 --precision fp32``.
    Shapes: x N×C×H×W in [0, 1], y (and target) int64 N. ``queries`` counts forward evaluations per
    image; ``extras`` holds ``pixels`` (N×k×2 row/column), ``values`` (N×k×C) and
    ``best_fitness`` (generations+1 × N, never increasing).

    Example::

        from attacks import OnePixel
        result = OnePixel(eps=1)(model, x, y)
        fooled = result.success
        paper = OnePixel.paper(eps=3)(model, x, y)   # Su et al.'s population 400 × 100 generations
    """

    name: ClassVar[str] = "one-pixel"
    norms: ClassVar[tuple[str, ...]] = names(L0)

    eps: float = 1
    norm: str = L0.name
    population: int = 100
    generations: int = 10
    precision: str = "bf16"
    mutation: float = 0.5
    max_batch: int | None = None  # images per forward pass; None: 256 on a CPU (cache-bound), 8192 elsewhere

    @classmethod
    def paper(cls, **settings) -> OnePixel:
        """The paper's settings (population 400, 100 generations, full precision); ``settings`` override them."""
        return cls(**{"population": 400, "generations": 100, "precision": "fp32", **settings})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.population < 4 or self.generations < 0 or (self.max_batch or 1) < 1 or not 0 < self.mutation <= 2:
            raise ConfigError("one-pixel needs population ≥ 4, generations ≥ 0, max_batch ≥ 1 and 0 < mutation ≤ 2")

    @torch.no_grad()
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, *, target, rng) -> Perturbed:
        n, channels, height, width = x.shape
        k, size = int(self.eps), self.population
        limits = torch.tensor([height - 1, width - 1] + [1.0] * channels, device=x.device)
        pop = rng.rand(size, k, 2 + channels) * limits
        colours = rng.randn(size, k, channels) * 0.5 + 0.5
        pop[..., 2:] = colours.clamp(0, 1)  # the paper's N(128, 127) colours, in [0, 1]
        everyone = torch.arange(n, device=x.device)
        fitness, fooled = self._evaluate(model, x, y, target, everyone, pop)
        queries = torch.full((n,), size, dtype=torch.long, device=x.device)
        done = fooled.any(1)
        history = [fitness.amin(1)]
        for _ in range(self.generations):
            active = (~done).nonzero().squeeze(1)  # one host sync per generation: the batch shrinks
            if len(active) == 0:
                break
            parents = pop[active]
            a, b, c = _three_others(rng[active], size)
            mutant = _members(parents, a) + self.mutation * (_members(parents, b) - _members(parents, c))
            trial = torch.minimum(torch.maximum(mutant, torch.zeros_like(limits)), limits)
            trial_fitness, trial_fooled = self._evaluate(model, x, y, target, active, trial)
            better = trial_fitness < fitness[active]  # selection: a child replaces its parent only if fitter
            pop[active] = torch.where(better[..., None, None], trial, parents)
            fitness[active] = torch.where(better, trial_fitness, fitness[active])
            fooled[active] = torch.where(better, trial_fooled, fooled[active])
            queries[active] += size
            done[active] = fooled[active].any(1)
            history.append(fitness.amin(1))
        # a fooling candidate where there is one, else the fittest
        score = torch.where(fooled, fitness - 1e9, fitness)
        best = pop[everyone, score.argmin(1)]  # n × k × (2 + C)
        x_adv = _apply(x, everyone, best[:, None])[:, 0]
        positions = best[..., :2].round().long()
        extras = {"pixels": positions, "values": best[..., 2:], "best_fitness": torch.stack(history)}
        return Perturbed(x_adv, queries=queries, extras=extras)

    def _evaluate(self, model, x, y, target, images: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor]:
        """Fitness (to minimise) and success of every candidate of ``images``, in chunks of ``max_batch``."""
        m, size = candidates.shape[:2]
        flat_images = images.repeat_interleave(size)
        flat_candidates = candidates.reshape(m * size, 1, *candidates.shape[2:])
        goal = (y if target is None else target)[flat_images]
        fitness, success = [], []
        step = self.max_batch or (256 if x.device.type == "cpu" else 8192)
        for lo in range(0, m * size, step):
            chunk = slice(lo, lo + step)
            perturbed = _apply(x, flat_images[chunk], flat_candidates[chunk])[:, 0]
            logits = model(perturbed).float()
            probability = logits.softmax(1).gather(1, goal[chunk, None]).squeeze(1)
            fitness.append(probability if target is None else -probability)
            success.append(is_success(logits, y[flat_images[chunk]], None if target is None else goal[chunk]))
        return torch.cat(fitness).view(m, size), torch.cat(success).view(m, size)


def _three_others(rng: SampleRandom, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """For every candidate, three distinct random other members of its population (DE/rand/1).

    Each pick is uniform over the members not taken yet: a draw in [0, size − m) is moved past the m
    members already excluded (the candidate itself, then earlier picks), in increasing order.
    """
    excluded = torch.arange(size, device=rng.device).expand(len(rng), size)[..., None]  # rows × size × 1
    for m in range(1, 4):
        pick = rng.randint(size - m, size, 1)
        for taken in excluded.sort(dim=2).values.unbind(2):
            pick = pick + (pick >= taken[..., None]).long()
        excluded = torch.cat([excluded, pick], dim=2)
    return excluded[..., 1], excluded[..., 2], excluded[..., 3]


def _members(population: Tensor, index: Tensor) -> Tensor:
    """``population[i, index[i, j]]`` for every image i and candidate j."""
    return population.gather(1, index[..., None, None].expand_as(population))


def _apply(x: Tensor, images: Tensor, candidates: Tensor) -> Tensor:
    """Images ``x[images]`` with each candidate's pixels written in: returns len(images) × 1 × C×H×W."""
    out = x[images].clone()
    rows = candidates[:, 0, :, 0].round().long()
    cols = candidates[:, 0, :, 1].round().long()
    values = candidates[:, 0, :, 2:].to(x.dtype)  # m × k × C
    batch = torch.arange(len(images), device=x.device)
    for pixel in range(rows.shape[1]):  # k ≤ a handful: one vectorised write per changed pixel
        out[
            batch[:, None],
            torch.arange(x.shape[1], device=x.device)[None, :],
            rows[:, pixel, None],
            cols[:, pixel, None],
        ] = values[:, pixel]
    return out[:, None]
