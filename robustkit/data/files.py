"""Splits that stream: an index of image files and labels; each item is decoded only when a batch needs it.

Decoding (PIL open, convert, resize and crop) runs in ``DataLoader`` worker processes, one item at a
time, with pinned memory and prefetch on CUDA. Items travel as uint8 and become [0, 1] floats on the
device, by the same conversion the resident loaders use, so a streamed batch equals a resident one bit
for bit. Under torchrun the engine and the training loop stride positions per rank themselves (as
``DistributedSampler`` does) and hand this split the positions to read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from robustkit.data.base import IndexedSplit, Split, uint8_to_float
from robustkit.errors import DataError

# a file-backed training split below this (decoded, float32) is decoded once and trained resident:
# reading it again every epoch would cost far more than the memory (1 GiB: ~20 000 images at 64 px)
RESIDENT_LIMIT_BYTES = 1 << 30
MAX_DEFAULT_WORKERS = 8


def default_workers() -> int:
    """Decoding processes when ``--workers`` is not given: one per core this process may use, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(MAX_DEFAULT_WORKERS, cores)


@dataclass(frozen=True)
class Preprocess:
    """File → uint8 C×H×W: resize the shorter side to ``resize``, centre-crop ``crop``; with ``random``,
    a random-resized crop to ``crop`` and a horizontal flip drawn from the item's seed (training)."""

    crop: int
    resize: int | None = None  # None: the crop size
    mode: str = "RGB"  # PIL mode: RGB or L
    random: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1 if self.mode == "L" else 3, self.crop, self.crop)

    def __call__(self, path: str, seed: int | None) -> Tensor:
        from torchvision.transforms import RandomResizedCrop
        from torchvision.transforms import functional as F

        image = read_image(path, self.mode)
        if not self.random:
            return F.pil_to_tensor(F.center_crop(F.resize(image, self.resize or self.crop), self.crop))
        with torch.random.fork_rng(devices=[]):  # the item's own draws: the same in any worker, any epoch order
            torch.manual_seed(0 if seed is None else seed)
            top, left, height, width = RandomResizedCrop.get_params(image, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
            flip = bool(torch.rand(()) < 0.5)
        image = F.resized_crop(image, top, left, height, width, [self.crop, self.crop])
        return F.pil_to_tensor(F.hflip(image) if flip else image)


def read_image(path: str, mode: str):
    """One image file as a PIL image in ``mode``; an unreadable file is one line naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


class _Items(Dataset):
    """What worker processes see: files and the preprocessing, keyed by (position, item seed)."""

    def __init__(self, files: tuple[str, ...], preprocess: Preprocess) -> None:
        self.files, self.preprocess = files, preprocess

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int | None]) -> Tensor:
        position, seed = key
        return self.preprocess(self.files[position], seed)


@dataclass(frozen=True, eq=False)
class FileSplit(IndexedSplit):
    """A split of image files: ``files`` and ``labels`` are its index; pixels exist only batch by batch."""

    files: tuple[str, ...]
    labels: Tensor
    preprocess: Preprocess
    workers: int | None = None  # decoding processes; None: ``default_workers()``

    def __post_init__(self) -> None:
        if self.labels.ndim != 1 or len(self.files) != len(self.labels):
            raise DataError(f"{len(self.files)} files for {len(self.labels)} labels")

    @property
    def images(self) -> Tensor:
        raise DataError(
            f"this split streams its {len(self)} images from files: read it in batches (split.batches(...)), "
            "or load a small subset first (split.subset(n).load().images)"
        )

    @property
    def nbytes(self) -> int:
        """Its size decoded to float32, what a resident copy would take."""
        channels, height, width = self.preprocess.shape
        return len(self) * channels * height * width * 4

    def take(self, index: Tensor) -> FileSplit:
        files = tuple(self.files[i] for i in index.tolist())
        return FileSplit(files, self.labels[index], self.preprocess, self.workers)

    def batches(
        self, batch_size: int, *, device: torch.device | str | None = None, order: Tensor | None = None, seed: int = 0
    ) -> Iterator[tuple[Tensor, Tensor]]:
        device = torch.device(device or "cpu")
        order = torch.arange(len(self)) if order is None else order.cpu()
        if len(order) == 0:
            return
        chunks = order.split(batch_size)
        keys = [
            [(i, _item_seed(seed, i) if self.preprocess.random else None) for i in chunk.tolist()] for chunk in chunks
        ]
        workers = min(default_workers() if self.workers is None else self.workers, len(chunks))
        loader = DataLoader(
            _Items(self.files, self.preprocess),
            batch_sampler=keys,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            prefetch_factor=4 if workers else None,
        )
        for chunk, x in zip(chunks, loader, strict=True):
            yield uint8_to_float(x.to(device, non_blocking=True)), self.labels[chunk].to(device)

    def load(self) -> Split:
        images = torch.empty((len(self), *self.preprocess.shape))
        lo = 0
        for x, _ in self.batches(256):
            images[lo : lo + len(x)] = x
            lo += len(x)
        return Split(images, self.labels.clone())


def _item_seed(seed: int, position: int) -> int:
    return hash((seed, position)) & 0x7FFF_FFFF_FFFF_FFFF  # tuples of ints hash the same in every run


def for_training(split: IndexedSplit) -> IndexedSplit:
    """The split as training reads it: a small file split with fixed preprocessing (under
    ``RESIDENT_LIMIT_BYTES`` decoded) is decoded once and trained resident; larger ones stream."""
    if isinstance(split, FileSplit) and not split.preprocess.random and split.nbytes <= RESIDENT_LIMIT_BYTES:
        return split.load()
    return split
