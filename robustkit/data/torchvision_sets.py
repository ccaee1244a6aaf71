"""MNIST, CIFAR-10 and CIFAR-100 through torchvision: an existing folder, or ``--download``.

torchvision keeps these as whole arrays (``.data``), so they become one tensor without PIL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from robustkit import paths
from robustkit.data.base import DatasetInfo, ImageDataset, Split, SplitName, uint8_to_float
from robustkit.errors import DataError
from robustkit.registry import DATASETS

_CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR100 = tuple(
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
    "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
    "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid "
    "otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road "
    "rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower "
    "sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale "
    "willow_tree wolf woman worm".split()
)


class TorchvisionDataset(ImageDataset):
    """Shared loading for torchvision's array-backed classification sets."""

    torchvision_class: ClassVar[str]
    static_info: ClassVar[DatasetInfo]

    @property
    def info(self) -> DatasetInfo:
        return self.static_info

    def root(self) -> Path:
        return self.data_dir or Path(os.environ.get("ROBUSTKIT_DATA") or paths.data_root())

    def files_read(self, split: SplitName) -> tuple[str, ...]:
        return (str(self.root()),)

    def load_split(self, split: SplitName) -> Split:
        import torchvision.datasets

        cls = getattr(torchvision.datasets, self.torchvision_class)
        try:
            ds: Any = cls(str(self.root()), train=split == "train", download=self.download)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            raise DataError(
                f"{self.name} not found under {self.root()} ({err}); pass --data-dir to a folder that "
                "holds it in torchvision's layout, or --download (needs internet)"
            ) from None
        except Exception as err:
            raise DataError(f"could not load {self.name} from {self.root()}: {err}") from None
        data = torch.as_tensor(np.asarray(ds.data))
        images = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)  # → N×C×H×W
        return Split(uint8_to_float(images.contiguous()), torch.as_tensor(ds.targets, dtype=torch.int64))


@DATASETS.register("mnist")
class MNIST(TorchvisionDataset):
    """LeCun's 28×28 handwritten digits, 10 classes, 60k train / 10k test."""

    name = "mnist"
    torchvision_class = "MNIST"
    static_info = DatasetInfo(
        "mnist", 10, (1, 28, 28), tuple(str(d) for d in range(10)), (0.1307,), (0.3081,), flip_invariant=False
    )


@DATASETS.register("cifar10")
class CIFAR10(TorchvisionDataset):
    """Krizhevsky's 32×32 colour images, 10 classes, 50k train / 10k test."""

    name = "cifar10"
    torchvision_class = "CIFAR10"
    static_info = DatasetInfo("cifar10", 10, (3, 32, 32), _CIFAR10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


@DATASETS.register("cifar100")
class CIFAR100(TorchvisionDataset):
    """Krizhevsky's 32×32 colour images, 100 fine classes, 50k train / 10k test."""

    name = "cifar100"
    torchvision_class = "CIFAR100"
    static_info = DatasetInfo(
        "cifar100", 100, (3, 32, 32), _CIFAR100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    )
