"""ImageNet (ILSVRC-2012) in its usual layout, streamed with the standard preprocessing.

``--data-dir DIR`` holds ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (torchvision's
``ImageNet`` arranges the archives so, and writes ``meta.bin`` from the devkit). Class names: the
devkit's where ``meta.bin`` is present; else, with all 1000 wnid folders, torchvision's ImageNet
categories (ordered by wnid, as every pretrained model's outputs are; no download); else (a partial
tree) the classes are the wnid folders present, named by their wnids, labelled 0…k-1 in sorted order.
"""

from __future__ import annotations

from pathlib import Path

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

    def __init__(self, *, data_dir: str | Path | None = None, image_size: int = 224, resize_size: int | None = None,
                 workers: int | None = None, download: bool = False):  # fmt: skip
        super().__init__(data_dir=data_dir, download=download)
        if self.data_dir is None or not self.data_dir.is_dir():
            raise DataError(f"imagenet needs --data-dir pointing at a folder holding train/ and val/ (got {data_dir})")
        if download:
            raise ConfigError("imagenet cannot be downloaded: get ILSVRC-2012 from image-net.org and pass --data-dir")
        resize_size = resize_size or round(image_size * 256 / 224)
        if image_size < 8 or resize_size < image_size:
            raise ConfigError(f"imagenet needs image_size ≥ 8 and resize_size ≥ image_size, got {image_size}, {resize_size}")
        if workers is not None and workers < 0:
            raise ConfigError(f"workers must be 0 or more, got {workers}")
        self.image_size, self.resize_size, self.workers = image_size, resize_size, workers
        self._info: DatasetInfo | None = None

    def _folder(self, split: SplitName) -> Path:
        folder = self.data_dir / _FOLDERS[split]
        if not folder.is_dir():
            raise DataError(f"imagenet: no {_FOLDERS[split]}/ folder in {self.data_dir} (the ILSVRC-2012 layout "
                            f"is {_FOLDERS[split]}/<wnid>/*.JPEG; torchvision.datasets.ImageNet arranges the archives so)")  # fmt: skip
        return folder

    @property
    def info(self) -> DatasetInfo:
        if self._info is None:
            wnids = self._wnids()
            shape = (3, self.image_size, self.image_size)
            self._info = DatasetInfo(self.name, len(wnids), shape, self._names(wnids), IMAGENET_MEAN, IMAGENET_STD)
        return self._info

    def _wnids(self) -> tuple[str, ...]:
        """The classes: the wnid folders of val/, sorted (the standard label order)."""
        wnids = tuple(sorted(p.name for p in self._folder("test").iterdir() if p.is_dir()))
        if not wnids:
            raise DataError(f"imagenet: {self._folder('test')} holds no <wnid> folders")
        return wnids

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
        files, labels = index_folder(self._folder(split), self._wnids())
        if split == "train":
            preprocess = Preprocess(self.image_size, random=True)
        else:
            preprocess = Preprocess(self.image_size, resize=self.resize_size)
        return FileSplit(files, labels, preprocess, self.workers)
