"""Per-sample random numbers: a sample's draws depend on (seed, its index, the draw's number) only.

A ``torch.Generator`` seeded once per call hands out numbers in batch order, so a sample's random
start would change with the batch size and, under torchrun, with its shard, neither of which is in a
result's key. Here every number is a counter-based hash (splitmix64, Steele et al. 2014) of the seed,
the sample's index in the evaluation set, how many draws came before, and the element's position:
the same sample gets the same numbers alone, in a batch of 300, or on another rank. All of it is
vectorised integer arithmetic on the samples' device.

An attack draws in the same order for every sample it still works on (the k-th draw of a restart,
step or generation is the k-th for all of them); ``rng[rows]`` views a subset and shares the count.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment, 2^64 / φ
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_U64 = (1 << 64) - 1


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 torch stores."""
    value &= _U64
    return value - (1 << 64) if value >= 1 << 63 else value


def _shr(z: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` is arithmetic)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def mix(z: Tensor) -> Tensor:
    """splitmix64's finaliser on int64 bit patterns; multiplication wraps modulo 2^64."""
    z = (z ^ _shr(z, 30)) * _signed(_MIX1)
    z = (z ^ _shr(z, 27)) * _signed(_MIX2)
    return z ^ _shr(z, 31)


def mix_int(z: int) -> int:
    """``mix`` on a Python int (the scalar parts of a key, and the tests' reference)."""
    z &= _U64
    z = ((z ^ (z >> 30)) * _MIX1) & _U64
    z = ((z ^ (z >> 27)) * _MIX2) & _U64
    return z ^ (z >> 31)


class SampleRandom:
    """Random numbers for a batch of samples, row i drawn from (seed, ``index[i]``) alone.

    ``rand(*shape)``, ``randn(*shape)`` and ``randint(high, *shape)`` return N × shape tensors.
    """

    def __init__(self, seed: int, index: Tensor, *, _draws: list[int] | None = None) -> None:
        self.seed = int(seed)
        self.index = index.long()
        self._draws = [0] if _draws is None else _draws  # shared with every view of this object

    @classmethod
    def from_generator(cls, generator: torch.Generator, n: int, device: torch.device) -> SampleRandom:
        """A fresh stream for ``n`` samples seeded from ``generator`` (training's per-epoch generators)."""
        seed = int(torch.randint(1 << 62, (1,), generator=generator, device=generator.device).item())
        return cls(seed, torch.arange(n, device=device))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, rows: Tensor | slice) -> SampleRandom:
        """The rows ``rows`` of this batch; draws made through the view count for the whole batch."""
        return SampleRandom(self.seed, self.index[rows], _draws=self._draws)

    @property
    def device(self) -> torch.device:
        return self.index.device

    def bits(self, *shape: int) -> Tensor:
        """N × shape independent 64-bit patterns (int64) for the next draw."""
        return self.bits_of(shape)[0]

    def bits_of(self, *shapes: tuple[int, ...]) -> list[Tensor]:
        """The next draws' bits, one N × shape tensor per shape: what ``bits`` returns called once per shape in
        turn, with one set of tensor operations for them all (a small batch's draws cost launches, not work)."""
        return _split(self._block(shapes), shapes)

    def _block(self, shapes: tuple[tuple[int, ...], ...]) -> Tensor:
        """The next ``len(shapes)`` draws' bits as one draws × N × (largest element count) tensor."""
        first = self._draws[0]
        self._draws[0] += len(shapes)
        keys = [
            _signed(mix_int(mix_int(self.seed + _GOLDEN) ^ mix_int((first + k + 1) * _GOLDEN)))
            for k in range(len(shapes))
        ]
        per_sample = mix(self.index[None, :] ^ torch.tensor(keys, device=self.device)[:, None])  # draws × N
        element = torch.arange(1, max(math.prod(shape) for shape in shapes) + 1, device=self.device, dtype=torch.long)
        return mix(per_sample[:, :, None] + element[None, None, :] * _signed(_GOLDEN))

    def rand(self, *shape: int) -> Tensor:
        """Uniform on [0, 1), float32 (24 random bits, so every value is exact)."""
        return _shr(self.bits(*shape), 40).float() * 2.0**-24

    def randn(self, *shape: int) -> Tensor:
        """Standard normal, float32 (Box–Muller on two 26-bit uniforms of one pattern)."""
        z = self.bits(*shape)
        u1 = (_shr(z, 38).double() + 0.5) * 2.0**-26  # in (0, 1): the log is finite
        u2 = (_shr(z, 12) & ((1 << 26) - 1)).double() * 2.0**-26
        return ((-2 * u1.log()).sqrt() * torch.cos(2 * math.pi * u2)).float()

    def randint(self, high: int | Tensor, *shape: int) -> Tensor:
        """Integers uniform in [0, high) (int64); ``high`` may be one bound per sample (a tensor of N)."""
        return self.randints((high, shape))[0]

    def randints(self, *draws: tuple[int | Tensor, tuple[int, ...]]) -> list[Tensor]:
        """Several ``randint`` draws at once, each (high, shape): the numbers ``randint`` gives called in turn."""
        shapes = tuple(shape for _, shape in draws)
        highs = torch.stack(
            [torch.as_tensor(high, dtype=torch.double, device=self.device).expand(len(self.index)) for high, _ in draws]
        )
        u = _shr(self._block(shapes), 11).double() * 2.0**-53
        return _split((u * highs[:, :, None]).long(), shapes)


def _split(block: Tensor, shapes: tuple[tuple[int, ...], ...]) -> list[Tensor]:
    """A draws × N × elements block as one N × shape tensor per draw."""
    return [block[k, :, : math.prod(shape)].reshape(block.shape[1], *shape) for k, shape in enumerate(shapes)]
