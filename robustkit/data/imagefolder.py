"""Any folder of class sub-folders of images (torchvision's ImageFolder), resized to one size."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from robustkit.data.base import DatasetInfo, ImageDataset, Split, SplitName, uint8_to_float
from robustkit.errors import ConfigError, DataError
from robustkit.registry import DATASETS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_SPLIT_DIRS = {"train": ("train",), "test": ("test", "val")}


@DATASETS.register("imagefolder")
class ImageFolder(ImageDataset):
    """``--data-dir ROOT``: ROOT/{train,test|val}/CLASS/*.png, or ROOT/CLASS/* split 80/20 by seed.

    Images are resized (shorter side) and centre-cropped to ``size`` px, RGB.
    """

    name = "imagefolder"

    def __init__(self, *, data_dir: str | Path | None = None, size: int = 64, seed: int = 0, download: bool = False):
        super().__init__(data_dir=data_dir, download=download)
        if self.data_dir is None or not self.data_dir.is_dir():
            raise DataError(f"imagefolder needs --data-dir pointing at a folder of class folders (got {data_dir})")
        if size < 8:
            raise ConfigError(f"imagefolder size must be at least 8 px, got {size}")
        self.size, self.seed = size, seed

    def _split_root(self, split: SplitName) -> Path | None:
        return next((self.data_dir / d for d in _SPLIT_DIRS[split] if (self.data_dir / d).is_dir()), None)

    @property
    def info(self) -> DatasetInfo:
        root = self._split_root("train") or self._split_root("test") or self.data_dir
        classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
        if not classes:
            raise DataError(f"{root} holds no class folders")
        return DatasetInfo(self.name, len(classes), (3, self.size, self.size), classes, IMAGENET_MEAN, IMAGENET_STD)

    def load_split(self, split: SplitName) -> Split:
        root = self._split_root(split)
        if root is not None:
            return self._read(root)
        if self._split_root("train") or self._split_root("test"):
            raise DataError(f"{self.data_dir} has no '{'/'.join(_SPLIT_DIRS[split])}' folder for the {split} split")
        whole = self._read(self.data_dir)
        order = torch.randperm(len(whole), generator=torch.Generator().manual_seed(self.seed))
        cut = int(0.8 * len(whole))
        index = (order[:cut] if split == "train" else order[cut:]).sort().values
        return Split(whole.images[index], whole.labels[index])

    def _read(self, root: Path) -> Split:
        from torchvision import datasets, transforms

        transform = transforms.Compose(
            [transforms.Resize(self.size), transforms.CenterCrop(self.size), transforms.PILToTensor()]
        )
        try:
            folder = datasets.ImageFolder(str(root), transform=transform, loader=_rgb_loader)
        except (FileNotFoundError, OSError) as err:
            raise DataError(f"cannot read image folder {root}: {err}") from None
        if folder.classes != list(self.info.class_names):
            raise DataError(f"{root} has classes {folder.classes}, expected {list(self.info.class_names)}")
        images = torch.empty((len(folder), 3, self.size, self.size), dtype=torch.uint8)
        labels = torch.empty(len(folder), dtype=torch.int64)
        for i, (image, label) in enumerate(tqdm(folder, desc=f"reading {root.name}", disable=None, leave=False)):
            images[i], labels[i] = image, label
        return Split(uint8_to_float(images), labels)


def _rgb_loader(path: str):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")
