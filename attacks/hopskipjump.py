"""HopSkipJump: a label-only attack that walks along the decision boundary (L2 and L∞)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from robustkit.errors import ConfigError
from robustkit.label_only import LabelAttack, LabelOracle
from robustkit.per_sample_random import SampleRandom, mix_int
from robustkit.registry import ATTACKS
from robustkit.threats import L2, Linf, names
from robustkit.threats.base import clip_to_box

_CHUNK = 32  # gradient probes drawn per random draw: the draw count per step is then the same for every batch
_MAX_BISECTIONS = 64  # a float32 interval cannot be halved usefully more often (a guard, never reached)
_MAX_HALVINGS = 20  # the step-size search gives up after this many halvings (the point stays where it was)


@ATTACKS.register
@dataclass(frozen=True, kw_only=True)
class HopSkipJump(LabelAttack):
    """HopSkipJump (Chen, Jordan & Wainwright, IEEE S&P 2020, arXiv:1904.02144): label queries only.

    From a misclassified start (uniform noise, blended toward x by binary search) it repeats: estimate the
    boundary's normal at the current point from ``init_evals``·√t random probes' labels (Monte Carlo, with
    the paper's baseline), step along it (its sign for L∞) by a geometrically shrunk size that stays
    adversarial, and binary-search back to the boundary toward x. Every sample is one row of each
    batched step.
    Arguments: ``eps``; ``norm`` (linf | l2); ``queries`` (label queries per sample; a sample within ε
    stops, so its ``queries`` is the count at which it was first broken); ``init_evals`` (100) and
    ``max_evals`` (10 000) probes per gradient estimate; ``gamma`` (1.0, binary-search precision
    θ = γ/d^1.5 for L2, γ/d² for L∞, as the paper's code); ``init_tries`` (100 noise draws to find a
    start); ``min_norm`` (False; True: spend the whole budget seeking each sample's smallest example,
    reported at its own norm); ``seed``.
    Shapes: x N×C×H×W in [0, 1], y (and target) int64 N; ``queries`` int64 N (≤ ``queries`` plus one
    step's binary search; the start may need up to ``init_tries`` + 30 of a smaller budget).
    Cost of the defaults: 1000 queries, ~34 s for 1000 Fashion-MNIST images on lenet5 on 2 idle CPU cores (L∞
    ε = 0.1, robust accuracy 0.429). Cost: ``queries`` forward passes per image at most (a broken image stops); 10 000 queries on 100
    Fashion-MNIST images on lenet5 (L∞ ε = 0.1) took 181 s on two shared CPU cores
    (``benchmarks/label_only_queries.py``). L∞ is the weak mode: RayS breaks far more at equal budgets.

    Example::

        from attacks import HopSkipJump
        result = HopSkipJump(eps=0.1, queries=5000)(model, x, y)   # result.queries: per sample
    """

    name: ClassVar[str] = "hopskipjump"
    norms: ClassVar[tuple[str, ...]] = names(Linf, L2)

    init_evals: int = 100
    max_evals: int = 10000
    gamma: float = 1.0
    init_tries: int = 100
    min_norm: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.init_evals <= self.max_evals or self.gamma <= 0 or self.init_tries < 1:
            raise ConfigError(
                f"HopSkipJump needs 1 ≤ init_evals ≤ max_evals, gamma > 0 and init_tries ≥ 1 "
                f"(got {self.init_evals}, {self.max_evals}, {self.gamma}, {self.init_tries})"
            )

    @property
    def minimum_norm(self) -> bool:
        return self.min_norm

    def search(self, oracle: LabelOracle, x: Tensor, rng: SampleRandom) -> Tensor:
        n, d = len(x), x[0].numel()
        linf = self.norm == Linf.name
        theta = self.gamma / (d**2 if linf else d**1.5)
        reserve = math.ceil(math.log2(1 / theta)) + _MAX_HALVINGS + 2  # queries a step needs beside its probes
        found, noise = self._start(oracle, x, rng)
        best, dist = x.clone(), torch.full((n,), math.inf, device=x.device)
        start = found.nonzero().squeeze(1)
        best[start], dist[start] = self._to_boundary(oracle, x[start], noise[start], start, theta, linf)
        active = found & (self.min_norm | (dist > self.eps))
        delta = torch.full((n,), 0.1, device=x.device)  # the probes' radius: 0.1 of the box at the first step
        for t in range(1, self.queries + 1):
            room = self.queries - oracle.spent - reserve
            active &= room > 0
            rows = active.nonzero().squeeze(1)
            if len(rows) == 0:
                break
            evals = min(int(self.init_evals * math.sqrt(t)), self.max_evals)
            grad = self._gradient(oracle, best[rows], rows, delta[rows], evals, room[rows], rng[rows], linf)
            update = grad.sign() if linf else grad
            stepped = self._step(oracle, best[rows], rows, update, dist[rows] / math.sqrt(t))
            new, new_dist = self._to_boundary(oracle, x[rows], stepped, rows, theta, linf)
            better = new_dist < dist[rows]  # the point moves only when it got closer
            best[rows[better]], dist[rows[better]] = new[better], new_dist[better]
            delta[rows] = dist[rows] * (d * theta if linf else math.sqrt(d) * theta)
            if not self.min_norm:
                active[rows] &= dist[rows] > self.eps
        return best

    def _start(self, oracle: LabelOracle, x: Tensor, rng: SampleRandom) -> tuple[Tensor, Tensor]:
        """Per sample a uniform-noise image the model misclassifies (bool found, the images): rounds of one draw
        per sample still looking, from a stream of their own so later draws do not depend on the batch."""
        own = SampleRandom(mix_int(rng.seed ^ 0x485344), rng.index)
        noise, found = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.init_tries):
            rows = (~found).nonzero().squeeze(1)
            if len(rows) == 0:
                break
            draw = own[rows].rand(*x.shape[1:]).to(x.dtype)
            hit = oracle.fooled(draw, rows)
            noise[rows[hit]], found[rows[hit]] = draw[hit], True
        return found, noise

    def _to_boundary(
        self, oracle: LabelOracle, origin: Tensor, adv: Tensor, rows: Tensor, theta: float, linf: bool
    ) -> tuple[Tensor, Tensor]:
        """Binary search from each adversarial ``adv`` toward its ``origin`` (samples ``rows``), the paper's
        ``binary_search_batch``: the blend (L2) or the ℓ∞ box of radius α (L∞) at the smallest α still
        adversarial; also each point's distance to its origin in the norm."""
        far = (adv - origin).flatten(1).abs().amax(1).float() if linf else torch.ones(len(rows), device=origin.device)
        high, low = far.clone(), torch.zeros_like(far)
        tol = torch.minimum(far * theta, torch.full_like(far, theta)) if linf else torch.full_like(far, theta)
        for _ in range(_MAX_BISECTIONS):
            open_ = (high - low) > tol
            if not open_.any():
                break
            mid = (high + low) / 2
            at = self._project(origin[open_], adv[open_], mid[open_], linf)
            hit = oracle.fooled(at, rows[open_])
            high[open_] = torch.where(hit, mid[open_], high[open_])
            low[open_] = torch.where(hit, low[open_], mid[open_])
        out = self._project(origin, adv, high, linf)
        diff = (out - origin).flatten(1)
        return out, (diff.abs().amax(1) if linf else diff.norm(dim=1)).float()

    @staticmethod
    def _project(x: Tensor, adv: Tensor, alpha: Tensor, linf: bool) -> Tensor:
        a = alpha[:, None, None, None].to(x.dtype)
        return torch.minimum(torch.maximum(adv, x - a), x + a) if linf else (1 - a) * x + a * adv

    def _gradient(
        self,
        oracle,
        point: Tensor,
        rows: Tensor,
        delta: Tensor,
        evals: int,
        room: Tensor,
        rng: SampleRandom,
        linf: bool,
    ) -> Tensor:
        """The boundary normal at each point, estimated from ``evals`` probes' labels (fewer where a sample's
        budget ``room`` is smaller): the mean of the probes' directions weighted by ±1 minus its mean."""
        k, shape = len(point), point.shape[1:]
        want = room.clamp(max=evals)  # probes each sample may still afford
        signed = torch.zeros_like(point, dtype=torch.float32)  # Σ sign·direction
        plain = torch.zeros_like(point, dtype=torch.float32)  # Σ direction over the probes taken
        signs = torch.zeros(k, device=point.device)
        for start in range(0, evals, _CHUNK):
            m = min(_CHUNK, evals - start)
            draw = rng.rand(m, *shape) * 2 - 1 if linf else rng.randn(m, *shape)
            draw = draw / draw.flatten(2).norm(dim=2)[:, :, None, None, None].clamp_min(1e-12)
            taken = (start + torch.arange(m, device=point.device))[None, :] < want[:, None]  # k×m
            probe = clip_to_box(point[:, None] + delta[:, None, None, None, None] * draw)
            direction = (probe - point[:, None]) / delta[:, None, None, None, None] * taken[:, :, None, None, None]
            fooled = oracle.fooled(probe[taken].to(point.dtype), rows[:, None].expand(k, m)[taken])
            sign = torch.zeros(k, m, device=point.device)
            sign[taken] = fooled.float() * 2 - 1
            signed += (sign[:, :, None, None, None] * direction).sum(1)
            plain += direction.sum(1)
            signs += sign.sum(1)
        mean = signs / want.clamp_min(1)
        # Σ (sign − mean)·direction, the paper's baseline; none where every probe fell on one side
        total = torch.where((mean.abs() == 1)[:, None, None, None], signed, signed - mean[:, None, None, None] * plain)
        total = total / total.flatten(1).norm(dim=1)[:, None, None, None].clamp_min(1e-12)
        return total.to(point.dtype)

    def _step(self, oracle: LabelOracle, point: Tensor, rows: Tensor, update: Tensor, size: Tensor) -> Tensor:
        """``point`` + size·update, size halved until the label stays wrong (the paper's geometric search)."""
        size = size.clone()
        done = torch.zeros(len(point), dtype=torch.bool, device=point.device)
        out = point.clone()
        for _ in range(_MAX_HALVINGS):
            open_ = (~done).nonzero().squeeze(1)
            if len(open_) == 0:
                break
            cand = clip_to_box(point[open_] + size[open_, None, None, None] * update[open_]).to(point.dtype)
            hit = oracle.fooled(cand, rows[open_])
            out[open_[hit]], done[open_[hit]] = cand[hit], True
            size[open_[~hit]] /= 2
        return out
