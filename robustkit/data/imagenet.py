"""ImageNet (ILSVRC-2012) in its usual layout, streamed with the standard preprocessing.

``--data-dir DIR`` (default ``$ROBUSTKIT_DATA/imagenet``) holds ``train/<wnid>/*.JPEG`` and
``val/<wnid>/*.JPEG`` (torchvision's ``ImageNet`` arranges the archives so, and writes ``meta.bin``
from the devkit). Labels: when every folder is one of ILSVRC-2012's 1000 wnids (all of them or a
part), a folder's label is its wnid's index in the sorted list of the 1000 (``imagenet_wnids.txt``,
the order every pretrained model's outputs follow), so a 1000-class model scores a partial tree
correctly. Other folders are the classes themselves, labelled 0…k-1 in sorted order, named by their
folders. Class names: the devkit's where ``meta.bin`` is present, else torchvision's ImageNet
categories for the 1000 (no download).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from robustkit import paths
from robustkit.data.base import DatasetInfo, ImageDataset, IndexedSplit, SplitName
from robustkit.data.files import FileSplit, Preprocess
from robustkit.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD, index_folder
from robustkit.errors import ConfigError, DataError
from robustkit.registry import DATASETS

IMAGENET_CLASSES = 1000
_FOLDERS = {"train": "train", "test": "val"}


@DATASETS.register("imagenet")
class ImageNet(ImageDataset):
    """ILSVRC-2012: 1000 classes, 1.28 M train / 50 000 val images; the test split is ``val/``.

    Evaluation: resize the shorter side to ``resize_size`` (default ``image_size``·256/224), centre-crop
    ``image_size``; training: random-resized crop to ``image_size`` and a flip, drawn per image.
    """

    name = "imagenet"
    streams = True

    def __init__(
        self,
        *,
        data_dir: str | Path | None = None,
        image_size: int = 224,
        resize_size: int | None = None,
        workers: int | None = None,
        download: bool = False,
    ):
        super().__init__(data_dir=data_dir or default_dir(), download=download)
        if not self.data_dir.is_dir():
            raise DataError(
                f"imagenet needs --data-dir (or $ROBUSTKIT_DATA/imagenet) to be a folder holding train/ "
                f"and val/; {self.data_dir} is not"
            )
        if download:
            raise ConfigError("imagenet cannot be downloaded: get ILSVRC-2012 from image-net.org and pass --data-dir")
        resize_size = resize_size or round(image_size * 256 / 224)
        if image_size < 8 or resize_size < image_size:
            raise ConfigError(
                f"imagenet needs image_size ≥ 8 and resize_size ≥ image_size, got {image_size}, {resize_size}"
            )
        if workers is not None and workers < 0:
            raise ConfigError(f"workers must be 0 or more, got {workers}")
        self.image_size, self.resize_size, self.workers = image_size, resize_size, workers
        self._info: DatasetInfo | None = None

    def _folder(self, split: SplitName) -> Path:
        folder = self.data_dir / _FOLDERS[split]
        if not folder.is_dir():
            raise DataError(
                f"imagenet: no {_FOLDERS[split]}/ folder in {self.data_dir} (the ILSVRC-2012 layout "
                f"is {_FOLDERS[split]}/<wnid>/*.JPEG; torchvision.datasets.ImageNet arranges the archives so)"
            )
        return folder

    @property
    def info(self) -> DatasetInfo:
        if self._info is None:
            wnids = self._wnids()
            shape = (3, self.image_size, self.image_size)
            self._info = DatasetInfo(self.name, len(wnids), shape, self._names(wnids), IMAGENET_MEAN, IMAGENET_STD)
        return self._info

    def _wnids(self) -> tuple[str, ...]:
        """The classes in label order: ILSVRC-2012's 1000 when val/ holds only those, else its folders, sorted."""
        present = sorted(p.name for p in self._folder("test").iterdir() if p.is_dir())
        if not present:
            raise DataError(f"imagenet: {self._folder('test')} holds no <wnid> folders")
        return ilsvrc_wnids() if set(present) <= set(ilsvrc_wnids()) else tuple(present)

    def _names(self, wnids: tuple[str, ...]) -> tuple[str, ...]:
        if (self.data_dir / "meta.bin").is_file():
            from torchvision.datasets.imagenet import load_meta_file

            named = load_meta_file(str(self.data_dir))[0]
            return tuple(named[w][0] if w in named else w for w in wnids)
        if len(wnids) == IMAGENET_CLASSES:
            from torchvision.models import ResNet50_Weights

            return tuple(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
        return wnids

    def load_split(self, split: SplitName) -> IndexedSplit:
        files, labels = index_folder(self._folder(split), self._wnids(), partial=True)
        if split == "train":
            preprocess = Preprocess(self.image_size, random=True)
        else:
            preprocess = Preprocess(self.image_size, resize=self.resize_size)
        return FileSplit(files, labels, preprocess, self.workers)


def default_dir() -> Path:
    """Where ImageNet is looked for without ``--data-dir``: ``$ROBUSTKIT_DATA/imagenet``, else the cache's."""
    return Path(os.environ.get("ROBUSTKIT_DATA") or paths.data_root()).expanduser() / "imagenet"


@cache
def ilsvrc_wnids() -> tuple[str, ...]:
    """ILSVRC-2012's 1000 class wnids, sorted: the label order of ImageNet models (torchvision ships no list)."""
    return tuple((Path(__file__).parent / "imagenet_wnids.txt").read_text().split())
