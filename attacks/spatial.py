"""Spatial attack: the worst rotation and translation on a grid, or of k random ones (Engstrom et al., ICML 2019).

Forward passes only, under ``torch.no_grad()``. Images × transforms are flattened into one batch,
rendered and classified together in chunks of ``max_batch``, so the whole grid of a whole batch costs
a handful of large passes and no Python loop over images or grid points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from robustkit.attack import Attack, Perturbed
from robustkit.errors import ConfigError
from robustkit.losses import attack_loss, confirmed_success
from robustkit.per_sample_random import SampleRandom
from robustkit.registry import ATTACKS
from robustkit.threats import names
from robustkit.threats.spatial import Spatial, render

_SEARCHES = ("grid", "random")


@ATTACKS.register
@dataclass(frozen=True, kw_only=True)
class SpatialAttack(Attack):
    """Adversarial rotation and translation (Engstrom, Tran, Tsipras, Schmidt & Mądry, ICML 2019, arXiv:1712.02779).

    Threat model ``spatial``: turn by at most ``eps`` degrees (30) about the centre, shift by at most
    ``translation`` pixels per axis (3), optionally zoom by a factor in [1 − ``scale``, 1 + ``scale``]
    (0: off); bilinear, black fill (``robustkit.threats.spatial.render``). Black box: logits only.
    Arguments: ``search`` (grid: the paper's exhaustive grid of ``rotations`` (31) angles ×
    ``translations`` (5) shifts per axis (× ``scales`` (3) zooms when ``scale`` > 0), 775 transforms,
    evaluated one angle (25 transforms) at a time; random: the paper's worst-of-``k`` (10) uniform
    draws); ``loss`` (margin | ce | dlr, maximised); ``early_stop`` (True: a sample fooled by some
    angle's transforms is not tried at further angles; False: the whole grid); ``max_batch`` (rendered
    images per forward pass; None: 1024 on a CPU, 8192 elsewhere); ``seed`` (random search only);
    ``precision``. Per sample the worst transform found is reported: one that fools the model if any
    does (targeted: reaches the target), the highest loss among those; it is the attack's evidence
    (``rotation``, ``dx``, ``dy`` and, when zooming, ``scale``), which the threat model re-renders.
    A sample's outcome does not depend on its batch: the grid is the same for all, random draws are
    the sample's own (seed, index), and early stopping is judged per sample at fixed angles.
    Shapes: x N×C×H×W in [0, 1], y (and target) int64 N; ``queries`` int64 N, transforms evaluated
    per sample (at most 775 on the grid, exactly ``k`` at random).
    Cost of the defaults: at most 775 forward passes per image; ~76 s for 1000 Fashion-MNIST images
    on smallcnn on 2 CPU cores (shared with other jobs), robust accuracy 0.000: nearly every image
    falls at the first angle, so ~26 passes each. An image no transform fools costs all 775 (±10°,
    ±1 px leaves 55 % robust: ~520 passes per image). ``search="random"`` (worst-of-10) took ~21 s
    there and left 0.102 robust.

    Example::

        from attacks import SpatialAttack
        result = SpatialAttack(eps=30, translation=3)(model, x, y)
        result.evidence["rotation"], result.evidence["dx"], result.evidence["dy"]   # per sample
        SpatialAttack(search="random", k=10)(model, x, y)                           # worst-of-10
    """

    name: ClassVar[str] = "spatial"
    norms: ClassVar[tuple[str, ...]] = names(Spatial)

    eps: float = 30.0
    norm: str = Spatial.name
    translation: float = 3.0  # pixels per axis
    scale: float = 0.0  # relative zoom; 0: none
    search: str = "grid"  # grid | random
    rotations: int = 31  # grid values of the angle, −eps…eps
    translations: int = 5  # grid values of each shift, −translation…translation
    scales: int = 3  # grid values of the zoom (only when scale > 0)
    k: int = 10  # random search: transforms drawn per sample
    loss: str = "margin"
    early_stop: bool = True
    max_batch: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.search not in _SEARCHES:
            raise ConfigError(f"spatial search must be grid or random, got '{self.search}'")
        counts = {
            "rotations": self.rotations,
            "translations": self.translations,
            "scales": self.scales,
            "k": self.k,
            "max_batch": self.max_batch or 1,
        }
        for key, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"spatial {key} must be a whole number ≥ 1, got {value!r}")

    def threat_settings(self) -> dict[str, float]:
        return {"translation": self.translation, "scale": self.scale}

    @torch.no_grad()
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, *, target, rng) -> Perturbed:
        self.threat.check_image(x.shape)
        n, device = len(x), x.device
        best = torch.tensor([0.0, 0.0, 0.0, 1.0], device=device).repeat(n, 1)  # rotation, dx, dy, zoom
        best_loss = torch.full((n,), float("-inf"), device=device)
        best_hit = torch.zeros(n, dtype=torch.bool, device=device)
        queries = torch.zeros(n, dtype=torch.long, device=device)
        active = torch.arange(n, device=device)
        for params in self._rounds(n, rng):  # r × 4 for every sample, or n × r × 4 each its own
            if len(active) == 0:
                break
            mine = params if params.ndim == 2 else params[active]
            loss, hit = self._score(model, x[active], y[active], None if target is None else target[active], mine)
            # the round's worst: a fooling transform if any, the highest loss among those
            key = torch.where(hit.any(1, keepdim=True), torch.where(hit, loss, float("-inf")), loss)
            j = key.argmax(1, keepdim=True)
            new_loss, new_hit = loss.gather(1, j).squeeze(1), hit.gather(1, j).squeeze(1)
            old_hit = best_hit[active]
            better = (new_hit & ~old_hit) | ((new_hit == old_hit) & (new_loss > best_loss[active]))
            full = mine.expand(len(active), *mine.shape) if mine.ndim == 2 else mine
            chosen = full.gather(1, j[..., None].expand(-1, 1, 4))
            take = active[better]
            best[take], best_loss[take], best_hit[take] = chosen[better, 0], new_loss[better], new_hit[better]
            queries[active] += loss.shape[1]
            if self.early_stop:
                active = active[~best_hit[active]]
        x_adv = render(x, best[:, 0], best[:, 1], best[:, 2], best[:, 3] if self.scale else None)
        evidence = {"rotation": best[:, 0], "dx": best[:, 1], "dy": best[:, 2]}
        if self.scale:
            evidence["scale"] = best[:, 3]
        return Perturbed(x_adv, queries=queries, evidence=evidence)

    def grid(self, device: torch.device | None = None) -> Tensor:
        """Every grid transform, G × 4 (rotation°, dx, dy, zoom), angle-major: the order rounds run in."""
        axes = [
            _axis(self.eps, self.rotations, device),
            _axis(self.translation, self.translations, device),
            _axis(self.translation, self.translations, device),
            1 + _axis(self.scale, self.scales, device),
        ]
        return torch.cartesian_prod(*axes)

    def _rounds(self, n: int, rng: SampleRandom) -> list[Tensor]:
        """The transforms in the order they are tried: one round per grid angle, or the k random draws at once."""
        if self.search == "grid":
            grid = self.grid(rng.device)
            return list(grid.split(len(grid) // len(_axis(self.eps, self.rotations))))
        u = rng.rand(self.k, 4) * 2 - 1  # n × k × 4 in [−1, 1)
        reach = torch.tensor([self.eps, self.translation, self.translation, self.scale], device=rng.device)
        draws = u * reach
        draws[..., 3] += 1
        return [draws]

    def _score(
        self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, params: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Loss and success of every (image, transform) pair, m × r, from chunked forward passes."""
        m, r = len(x), params.shape[-2]
        pairs = torch.arange(m * r, device=x.device)
        step = self.max_batch or (1024 if x.device.type == "cpu" else 8192)
        losses, hits = [], []
        for chunk in pairs.split(step):
            image, which = chunk // r, chunk % r
            p = params[which] if params.ndim == 2 else params[image, which]
            x_t = render(x[image], p[:, 0], p[:, 1], p[:, 2], p[:, 3] if self.scale else None)
            goal = None if target is None else target[image]
            logits = model(x_t).float()
            losses.append(attack_loss(logits, y[image], goal, self.loss))
            hits.append(confirmed_success(model, x_t, logits, y[image], goal, self.precision))
        return torch.cat(losses).view(m, r), torch.cat(hits).view(m, r)


def _axis(bound: float, count: int, device: torch.device | None = None) -> Tensor:
    """``count`` evenly spaced values in [−bound, bound]; just 0 when there is nothing to vary."""
    if bound == 0 or count == 1:
        return torch.zeros(1, device=device)
    return torch.linspace(-bound, bound, count, device=device)
