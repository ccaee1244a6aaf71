"""A small deterministic, learnable data set for tests: noisy copies of one random pattern per class."""

from __future__ import annotations

import torch

from robustkit.data.base import DatasetInfo, ImageDataset, Split, SplitName
from robustkit.errors import ConfigError
from robustkit.registry import DATASETS


@DATASETS.register("synthetic")
class Synthetic(ImageDataset):
    """Class prototypes (random binary images) plus Gaussian noise; same seed → same tensors."""

    name = "synthetic"

    def __init__(
        self,
        *,
        num_classes: int = 4,
        channels: int = 1,
        size: int = 16,
        n_train: int = 512,
        n_test: int = 256,
        noise: float = 0.2,
        seed: int = 0,
        data_dir=None,
        download: bool = False,
    ) -> None:
        super().__init__(data_dir=data_dir, download=download)
        if min(num_classes, channels, size, n_train, n_test) < 1 or num_classes < 2:
            raise ConfigError("synthetic needs num_classes >= 2 and positive channels, size, n_train, n_test")
        self.num_classes, self.channels, self.size = num_classes, channels, size
        self.n_train, self.n_test, self.noise, self.seed = n_train, n_test, noise, seed

    @property
    def info(self) -> DatasetInfo:
        c = self.channels
        names = tuple(f"class{i}" for i in range(self.num_classes))
        return DatasetInfo(self.name, self.num_classes, (c, self.size, self.size), names, (0.5,) * c, (0.3,) * c)

    def load_split(self, split: SplitName) -> Split:
        shape = (self.channels, self.size, self.size)
        prototypes = torch.rand((self.num_classes, *shape), generator=torch.Generator().manual_seed(self.seed)) > 0.5
        # a different stream per split, so test images are not copies of training images
        generator = torch.Generator().manual_seed(self.seed * 2 + (split == "test") + 1)
        n = self.n_train if split == "train" else self.n_test
        labels = torch.randint(self.num_classes, (n,), generator=generator)
        clean = 0.2 + 0.6 * prototypes[labels].float()
        images = (clean + self.noise * torch.randn((n, *shape), generator=generator)).clamp_(0, 1)
        return Split(images, labels)
