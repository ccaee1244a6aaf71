"""Fashion-MNIST (Xiao et al. 2017), the embedded default: read from the standard IDX files."""

from __future__ import annotations

import os
from pathlib import Path

from robustkit import paths
from robustkit.data.base import DatasetInfo, ImageDataset, Split, SplitName, uint8_to_float
from robustkit.data.idx import read_idx
from robustkit.errors import DataError
from robustkit.registry import DATASETS

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@DATASETS.register("fashion-mnist")
class FashionMNIST(ImageDataset):
    """Zalando's 28×28 grey clothing images, 10 classes, 60k train / 10k test."""

    name = "fashion-mnist"

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(self.name, 10, (1, 28, 28), _CLASSES, mean=(0.2860,), std=(0.3530,))

    def search_dirs(self) -> list[Path]:
        """Where the IDX files are looked for, in order: only the given ``data_dir`` when there is one
        (a folder named on purpose that lacks the files is an error, never a silent fall-back)."""
        roots = [self.data_dir] if self.data_dir else [os.environ.get("ROBUSTKIT_DATA"), paths.data_root()]
        dirs = []
        for root in (Path(r).expanduser() for r in roots if r):
            # the folder itself, our own layout, and torchvision's download layout
            dirs += [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
        return dirs if self.data_dir else [*dirs, DEBIAN_DIR]

    def _find(self, stem: str) -> Path | None:
        for directory in self.search_dirs():
            for candidate in (directory / f"{stem}.gz", directory / stem):
                if candidate.is_file():
                    return candidate
        return None

    def files_read(self, split: SplitName) -> tuple[str, ...]:
        return tuple(str(self._find(stem)) for stem in _FILES[split] if self._find(stem) is not None)

    def load_split(self, split: SplitName) -> Split:
        image_stem, label_stem = _FILES[split]
        if self._find(image_stem) is None and self.download:
            self._download()
        image_file, label_file = self._find(image_stem), self._find(label_stem)
        if (image_file is None or label_file is None) and self.data_dir is not None:
            missing = ", ".join(
                stem for stem, found in ((image_stem, image_file), (label_stem, label_file)) if found is None
            )
            raise DataError(
                f"--data-dir {self.data_dir} holds no fashion-mnist {split} files ({missing}[.gz], looked "
                "in it, its fashion-mnist/ and FashionMNIST/raw/); point it at the folder that holds them, "
                "or leave it out to use the system copy"
            )
        if image_file is None or label_file is None:
            looked = ", ".join(str(d) for d in dict.fromkeys(self.search_dirs()))
            raise DataError(
                f"fashion-mnist {split} files not found (looked in {looked}); get them with "
                "'apt-get install dataset-fashion-mnist', point --data-dir at a folder holding the IDX "
                "files, or pass --download (needs internet)"
            )
        images, labels = read_idx(image_file), read_idx(label_file)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{image_file} and {label_file} do not form an image/label pair")
        return Split(uint8_to_float(images.unsqueeze(1)), labels.long())

    def _download(self) -> None:
        from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST

        root = self.data_dir or paths.data_root()
        try:
            TorchvisionFashionMNIST(str(root), download=True)
        except Exception as err:  # network errors come in many types
            raise DataError(f"could not download fashion-mnist into {root}: {err}") from None
