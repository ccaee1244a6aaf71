"""Input-transform defenses: squeeze, compress or blur the input before the model sees it.

They train nothing: ``wrap`` puts the transform in front of the standard-trained model, whose
checkpoint they share. Most of them only *look* robust. Rounding has a zero gradient, so plain
PGD finds no direction (gradient masking); randomness makes one gradient a poor estimate of the
expected one. Athalye, Carlini & Wagner (ICML 2018) break both: an attack with ``bpda=True``
approximates every rounding step (routed through ``robustkit.bpda.non_differentiable``) by the
identity on the backward pass, and one with ``eot=k`` averages gradients over k random passes.

Example::

    from attacks import PGD
    from defenses import BitDepthReduction
    defended = BitDepthReduction(bits=3).wrap(model)
    PGD(eps=0.1)(defended, x, y)               # masked: looks robust
    PGD(eps=0.1, bpda=True)(defended, x, y)    # the honest number
"""

from __future__ import annotations

import functools
import math
from abc import abstractmethod
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustkit.bpda import NonDifferentiable, non_differentiable
from robustkit.defense import Defense
from robustkit.errors import ConfigError
from robustkit.random_forward import Randomised
from robustkit.registry import DEFENSES
from robustkit.training.loop import LossFn, cross_entropy_loss


class Transformed(nn.Module):
    """``model(transform(x))``: the model keeps its own state dict keys under ``model.``.

    The wrapper and the transform take the model's mode (a new module starts in training mode), so
    wrapping an eval-mode model gives an eval-mode model; the model's own modules are left as they are.
    """

    def __init__(self, model: nn.Module, transform: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.transform = transform.train(model.training)
        self.training = model.training

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.transform(x))


# ---- the transforms: parameter-free modules on [0, 1] pixels ----


class BitDepth(NonDifferentiable):
    """Round every pixel to one of 2^bits levels (Xu et al., NDSS 2018, feature squeezing)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.levels = 2**bits - 1

    def forward(self, x: Tensor) -> Tensor:
        return non_differentiable(x, lambda t: torch.round(t * self.levels) / self.levels)


# Annex K of the JPEG standard (ITU-T T.81): quantisation steps for 0…255 pixels
_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA = (
    (17, 18, 24, 47, *[99] * 4),
    (18, 21, 26, 66, *[99] * 4),
    (24, 26, 56, *[99] * 5),
    (47, 66, *[99] * 6),
    *[(99,) * 8] * 4,
)
# JFIF's full-range RGB → YCbCr (centred: rows 2 and 3 sum to 0, so x − 128 maps to Y − 128, Cb, Cr)
_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


def quantisation_table(base: tuple[tuple[int, ...], ...], quality: int) -> Tensor:
    """The IJG (libjpeg) scaling of a base table by ``quality`` ∈ [1, 100], steps in [1, 255]."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    table = (torch.tensor(base, dtype=torch.int64) * scale + 50) // 100
    return table.clamp(1, 255).double()


def dct_matrix(n: int = 8) -> Tensor:
    """The orthonormal DCT-II matrix D: coefficients of a block B are D·B·Dᵀ, and B = Dᵀ·C·D."""
    k, i = torch.arange(n, dtype=torch.float64)[:, None], torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d


@functools.lru_cache(maxsize=32)
def _constants(quality: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
    """DCT matrix, luma and chroma tables, RGB→YCbCr and back; made once per (quality, device, dtype)."""
    ycbcr = torch.tensor(_YCBCR, dtype=torch.float64)
    made = (
        dct_matrix(),
        quantisation_table(_LUMA, quality),
        quantisation_table(_CHROMA, quality),
        ycbcr,
        torch.linalg.inv(ycbcr),
    )
    return tuple(t.to(device, dtype) for t in made)


class Jpeg(NonDifferentiable):
    """JPEG's lossy step in torch: 8×8 block DCT-II, quantise with the quality-scaled tables, invert.

    Colour images go through YCbCr (luma table for Y, chroma table for Cb and Cr; no chroma
    subsampling); other channel counts use the luma table per channel. Sizes that are not
    multiples of 8 are padded by repeating the edge, as encoders do, and cropped back. Runs in
    float32 (or float64) whatever autocast is active: the rounding is the transform.
    """

    def __init__(self, quality: int) -> None:
        super().__init__()
        self.quality = quality

    def forward(self, x: Tensor) -> Tensor:
        work = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            return self._compress(x.to(work)).to(x.dtype)

    def _compress(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        d, luma, chroma, to_ycbcr, to_rgb = _constants(self.quality, x.device, x.dtype)
        colour = c == 3
        z = x * 255 - 128
        if colour:
            z = torch.einsum("oc,nchw->nohw", to_ycbcr, z)
        ph, pw = -h % 8, -w % 8
        if ph or pw:
            z = F.pad(z, (0, pw, 0, ph), mode="replicate")
        hb, wb = z.shape[2] // 8, z.shape[3] // 8
        blocks = z.reshape(n, c, hb, 8, wb, 8).transpose(3, 4)  # n, c, hb, wb, 8, 8
        table = torch.stack([luma, chroma, chroma]) if colour else luma.expand(c, 8, 8)
        table = table[None, :, None, None]
        coeffs = d @ blocks @ d.T
        coeffs = non_differentiable(coeffs / table, torch.round) * table
        blocks = d.T @ coeffs @ d
        z = blocks.transpose(3, 4).reshape(n, c, hb * 8, wb * 8)[:, :, :h, :w]
        if colour:
            z = torch.einsum("oc,nchw->nohw", to_rgb, z)
        return ((z + 128) / 255).clamp(0, 1)


class Noise(Randomised):
    """Add N(0, σ²) noise to every pixel, then clip to [0, 1]: a randomised forward pass.

    The noise comes from the module's own generator per device, seeded by ``seed``, so a run is
    reproducible and the global RNG is left alone; every pass draws fresh noise. Being
    ``Randomised``, its model's verdicts are majority votes over several passes (``predict``).
    """

    def __init__(self, sigma: float, seed: int = 0) -> None:
        super().__init__()
        self.sigma, self.seed = sigma, seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def reseed(self) -> None:
        """Start the noise stream over: the evaluation engine calls this before each evaluation, so a cell's figure does not depend on what ran before it (other
        cells, checks, a resumed run)."""
        self._generators.clear()

    def stream_state(self) -> dict[torch.device, Tensor]:
        return {device: generator.get_state() for device, generator in self._generators.items()}

    def restore_stream(self, state: dict[torch.device, Tensor]) -> None:
        self._generators = {}
        for device, generator_state in state.items():
            self._generators[device] = torch.Generator(device=device)
            self._generators[device].set_state(generator_state)

    def forward(self, x: Tensor) -> Tensor:
        generator = self._generators.get(x.device)
        if generator is None:
            generator = self._generators[x.device] = torch.Generator(device=x.device).manual_seed(self.seed)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
        return (x + self.sigma * noise.to(x.dtype)).clamp(0, 1)


# ---- the defenses: settings, registered ----


@dataclass(frozen=True, kw_only=True)
class InputTransform(Defense):
    """Base of input-transform defenses: no threat model of their own, no training, ``wrap`` only.

    ``eps`` and ``norm`` are accepted (commands pass the evaluation's budget) and ignored; the
    checkpoint evaluated is the undefended model's, trained by ``loss_fn`` (plain cross-entropy).
    """

    eps: float = 0.0

    trains_weights: ClassVar[bool] = False

    @abstractmethod
    def transform(self) -> nn.Module:
        """The parameter-free module applied to the input."""

    def wrap(self, model: nn.Module) -> nn.Module:
        return Transformed(model, self.transform())

    def loss_fn(self) -> LossFn:
        return cross_entropy_loss()

    def tag(self) -> str:
        own = [f for f in fields(self) if f.name not in ("eps", "norm")]
        return "-".join(f"{f.name}{getattr(self, f.name):g}" for f in own)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@DEFENSES.register
@dataclass(frozen=True, kw_only=True)
class BitDepthReduction(InputTransform):
    """Bit-depth reduction (Xu et al., NDSS 2018): round(x·(2^bits − 1)) / (2^bits − 1).

    Arguments: ``bits`` (3), 1…8. Broken by BPDA (``bpda=True``).
    """

    name: ClassVar[str] = "bit-depth"

    bits: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _whole(self.bits) or not 1 <= self.bits <= 8:
            raise ConfigError(f"bit-depth: bits must be a whole number in 1…8, got {self.bits!r}")

    def transform(self) -> nn.Module:
        return BitDepth(self.bits)


@DEFENSES.register
@dataclass(frozen=True, kw_only=True)
class JpegQuantization(InputTransform):
    """JPEG compression of the input (Dziugaite et al. 2016; Guo et al., ICLR 2018), in torch.

    Arguments: ``quality`` (75), 1…100 (IJG scaling of the standard tables; 100 is nearly lossless).
    Broken by BPDA (``bpda=True``).
    """

    name: ClassVar[str] = "jpeg"

    quality: int = 75

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _whole(self.quality) or not 1 <= self.quality <= 100:
            raise ConfigError(f"jpeg: quality must be a whole number in 1…100, got {self.quality!r}")

    def transform(self) -> nn.Module:
        return Jpeg(self.quality)


@DEFENSES.register
@dataclass(frozen=True, kw_only=True)
class GaussianNoise(InputTransform):
    """Gaussian noise on the input at inference: x + N(0, σ²), clipped to [0, 1].

    Arguments: ``sigma`` (0.1, pixels), ``seed`` (0) of the noise. Attack it with EOT (``eot=k``).
    """

    name: ClassVar[str] = "gaussian-noise"

    sigma: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.sigma, (int, float)) or not math.isfinite(self.sigma) or self.sigma < 0:
            raise ConfigError(f"gaussian-noise: sigma must be a finite number ≥ 0, got {self.sigma!r}")

    def transform(self) -> nn.Module:
        return Noise(self.sigma, self.seed)
