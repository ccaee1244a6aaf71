"""Any folder of class sub-folders of images (torchvision's ImageFolder), streamed at one size."""

from __future__ import annotations

from pathlib import Path

import torch

from robustkit.data.base import DatasetInfo, ImageDataset, IndexedSplit, SplitName
from robustkit.data.files import FileSplit, Preprocess
from robustkit.errors import ConfigError, DataError
from robustkit.registry import DATASETS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_SPLIT_DIRS = {"train": ("train",), "test": ("test", "val")}


def index_folder(
    root: Path, classes: tuple[str, ...], *, partial: bool = False
) -> tuple[tuple[str, ...], torch.Tensor]:
    """Files and labels of ROOT/CLASS/**: torchvision's ImageFolder order (class, then path), nothing decoded.

    The label of a folder is its class's position in ``classes``; with ``partial`` ROOT may hold only
    some of them (a part of ImageNet keeps the 1000-class labels), else exactly them.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        found, _ = find_classes(str(root))
        label = {c: i for i, c in enumerate(classes)}
        if (not set(found) <= label.keys()) if partial else tuple(found) != classes:
            raise DataError(f"{root} has classes {found[:5]}…, expected {list(classes[:5])}… ({len(classes)})")
        samples = make_dataset(str(root), {c: label[c] for c in found}, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as err:
        raise DataError(f"cannot read image folder {root}: {err}") from None
    files = tuple(path for path, _ in samples)
    return files, torch.tensor([label for _, label in samples], dtype=torch.int64)


@DATASETS.register("imagefolder")
class ImageFolder(ImageDataset):
    """``--data-dir ROOT``: ROOT/{train,test|val}/CLASS/*.png, or ROOT/CLASS/* split 80/20 by seed.

    Images are resized (shorter side) and centre-cropped to ``image_size`` px, RGB, and stream from
    their files (only the items read are decoded), in ``workers`` processes.
    """

    name = "imagefolder"
    streams = True

    def __init__(
        self,
        *,
        data_dir: str | Path | None = None,
        image_size: int = 64,
        seed: int = 0,
        workers: int | None = None,
        download: bool = False,
    ):
        super().__init__(data_dir=data_dir, download=download)
        if self.data_dir is None or not self.data_dir.is_dir():
            raise DataError(f"imagefolder needs --data-dir pointing at a folder of class folders (got {data_dir})")
        if image_size < 8:
            raise ConfigError(f"imagefolder image_size must be at least 8 px, got {image_size}")
        if workers is not None and workers < 0:
            raise ConfigError(f"workers must be 0 or more, got {workers}")
        self.image_size, self.seed, self.workers = image_size, seed, workers

    def _split_root(self, split: SplitName) -> Path | None:
        return next((self.data_dir / d for d in _SPLIT_DIRS[split] if (self.data_dir / d).is_dir()), None)

    @property
    def info(self) -> DatasetInfo:
        root = self._split_root("train") or self._split_root("test") or self.data_dir
        classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
        if not classes:
            raise DataError(f"{root} holds no class folders")
        shape = (3, self.image_size, self.image_size)
        return DatasetInfo(self.name, len(classes), shape, classes, IMAGENET_MEAN, IMAGENET_STD)

    def load_split(self, split: SplitName) -> IndexedSplit:
        root = self._split_root(split)
        if root is not None:
            return self._index(root)
        if self._split_root("train") or self._split_root("test"):
            raise DataError(f"{self.data_dir} has no '{'/'.join(_SPLIT_DIRS[split])}' folder for the {split} split")
        whole = self._index(self.data_dir)
        order = torch.randperm(len(whole), generator=torch.Generator().manual_seed(self.seed))
        cut = int(0.8 * len(whole))
        return whole.take((order[:cut] if split == "train" else order[cut:]).sort().values)

    def _index(self, root: Path) -> FileSplit:
        files, labels = index_folder(root, self.info.class_names)
        return FileSplit(files, labels, Preprocess(self.image_size), self.workers)
