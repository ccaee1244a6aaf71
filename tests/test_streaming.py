"""Streaming splits: decode only what is read, bounded memory, and the resident path's results bit for bit."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from attacks import FGSM
from robustkit.data import FileSplit, Split, get_dataset
from robustkit.data import files as files_module
from robustkit.errors import DataError
from robustkit.evaluation.engine import evaluate_attack
from robustkit.training.loop import TrainConfig, train_model

CLASSES = ("ants", "bees", "cats")


def write_folder(root: Path, n: int, side: int = 24) -> Path:
    """``n`` small random JPEGs in ROOT/test/<class>/ and a few in ROOT/train/<class>/."""
    from PIL import Image

    generator = torch.Generator().manual_seed(n)
    for split, count in (("test", n), ("train", 3 * len(CLASSES))):
        for i in range(count):
            folder = root / split / CLASSES[i % len(CLASSES)]
            folder.mkdir(parents=True, exist_ok=True)
            pixels = torch.randint(0, 256, (side, side + 8, 3), dtype=torch.uint8, generator=generator)
            Image.fromarray(pixels.numpy()).save(folder / f"{i:05d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("folder"), 300)


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.LazyLinear(len(CLASSES))).eval()


def open_folder(root: Path, workers: int = 0):
    return get_dataset("imagefolder", data_dir=root, image_size=16, workers=workers)


def test_a_subset_decodes_only_the_chosen_files(folder, monkeypatch):
    opened = []
    read = files_module.read_image
    monkeypatch.setattr(files_module, "read_image", lambda path, mode: opened.append(path) or read(path, mode))
    test = open_folder(folder).test
    assert isinstance(test, FileSplit) and len(test) == 300 and not opened  # indexing decodes nothing
    subset = test.subset(20, seed=3)
    model = small_model()
    model(torch.zeros(1, 3, 16, 16))
    evaluate_attack(model, subset, FGSM(eps=0.05), batch_size=8, progress=False)
    assert sorted(opened) == sorted(subset.files) and len(opened) == 20


def test_the_subset_is_the_resident_choice_and_results_match_bit_for_bit(folder):
    test = open_folder(folder).test
    resident = test.load()
    streamed, held = test.subset(40, seed=1), resident.subset(40, seed=1)
    assert torch.equal(streamed.labels, held.labels) and torch.equal(streamed.load().images, held.images)
    model = small_model()
    model(torch.zeros(1, 3, 16, 16))
    a = evaluate_attack(model, streamed, FGSM(eps=0.03), batch_size=16, progress=False)
    b = evaluate_attack(model, held, FGSM(eps=0.03), batch_size=16, progress=False)
    c = evaluate_attack(
        model, Split(held.images, held.labels), FGSM(eps=0.03), batch_size=16, progress=False
    )  # tensor form
    for other in (b, c):
        assert torch.equal(a.clean_correct, other.clean_correct) and torch.equal(a.robust, other.robust)
        assert torch.equal(a.norms.nan_to_num(-1), other.norms.nan_to_num(-1))


def test_two_workers_give_the_same_batches_as_none(folder):
    test = open_folder(folder).test.subset(50, seed=0)
    order = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    for preprocess in (test.preprocess, files_module.Preprocess(16, random=True)):
        split = FileSplit(test.files, test.labels, preprocess, workers=0)
        alone = list(split.batches(12, order=order, seed=5))
        pooled = list(FileSplit(test.files, test.labels, preprocess, workers=2).batches(12, order=order, seed=5))
        assert len(alone) == len(pooled) == 5
        for (x, y), (x2, y2) in zip(alone, pooled, strict=True):
            assert torch.equal(x, x2) and torch.equal(y, y2)


def test_a_streaming_split_refuses_all_images_at_once(folder):
    with pytest.raises(DataError, match="batches"):
        _ = open_folder(folder).test.images


_PEAK = """
import json, resource, sys, torch
from torch import nn
from attacks import FGSM
from robustkit.data import get_dataset
from robustkit.evaluation.engine import evaluate_attack
data = get_dataset("imagefolder", data_dir=sys.argv[1], image_size=96, workers=0)
model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.Flatten(), nn.LazyLinear(3)).eval()
model(torch.zeros(1, 3, 96, 96))
evaluate_attack(model, data.train, FGSM(eps=0.03), batch_size=10, progress=False)  # imports, first-call caches
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
evaluate_attack(model, data.test.subset(20, seed=0), FGSM(eps=0.03), batch_size=10, progress=False)
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before))
"""


def test_peak_memory_does_not_grow_with_the_folder(tmp_path):
    growth = {}
    for n in (100, 400):  # a resident read of 400 images at 96 px is 44 MB, of 100 images 11 MB
        root = write_folder(tmp_path / str(n), n)
        out = subprocess.run(
            [sys.executable, "-c", _PEAK, str(root)],
            capture_output=True,
            text=True,
            check=True,
            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)},
        )
        growth[n] = json.loads(out.stdout.strip().splitlines()[-1]) / 1024  # MB
    assert growth[400] < 10 and growth[400] < growth[100] + 5, growth


def test_training_streams_the_same_batches_as_resident(folder, monkeypatch):
    train = FileSplit(
        *(lambda s: (s.files, s.labels))(open_folder(folder).test.subset(64, seed=0)),
        files_module.Preprocess(16),
        workers=0,
    )
    config = TrainConfig(epochs=2, batch_size=16, lr=0.05, precision="fp32", augment=True, channels_last=False)
    weights = {}
    for limit in (files_module.RESIDENT_LIMIT_BYTES, 0):  # decoded once, then streamed every epoch
        monkeypatch.setattr(files_module, "RESIDENT_LIMIT_BYTES", limit)
        model = small_model()
        model(torch.zeros(1, 3, 16, 16))
        train_model(model, train, config, progress=False)
        weights[limit] = model.state_dict()
    resident, streamed = weights.values()
    assert all(torch.equal(resident[k], streamed[k]) for k in resident)


def make_imagenet(root: Path, wnids=("n01440764", "n01443537"), val: bool = True) -> Path:
    from PIL import Image

    for split in ("train", "val") if val else ("train",):
        for wnid in wnids:
            (root / split / wnid).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (50, 40), (40 * i, 90, 200)).save(root / split / wnid / f"{wnid}_{i}.JPEG")
    return root


def test_imagenet_layout_and_preprocessing(tmp_path):
    data = get_dataset("imagenet", data_dir=make_imagenet(tmp_path / "in"), image_size=32, workers=0)
    assert data.info.num_classes == 1000 and data.info.class_names[:2] == ("tench", "goldfish")  # ILSVRC's labels
    assert data.info.input_shape == (3, 32, 32) and data.resize_size == 37
    test, train = data.test, data.train
    assert len(test) == 4 and test.labels.tolist() == [0, 0, 1, 1] and not test.preprocess.random
    assert train.preprocess.random and train.load().images.shape == (4, 3, 32, 32)


def test_imagenet_names_all_1000_classes(tmp_path):
    for i in range(1000):
        (tmp_path / "val" / f"n{i:08d}").mkdir(parents=True)
    info = get_dataset("imagenet", data_dir=tmp_path).info
    assert info.num_classes == 1000 and info.class_names[:2] == ("tench", "goldfish")


def test_imagenet_folders_that_are_not_wnids_are_the_classes(tmp_path):
    data = get_dataset("imagenet", data_dir=make_imagenet(tmp_path / "in", wnids=("cat", "dog")), image_size=32)
    assert data.info.class_names == ("cat", "dog") and data.test.labels.tolist() == [0, 0, 1, 1]


def test_imagenet_without_val_is_one_clear_line(tmp_path):
    data = get_dataset("imagenet", data_dir=make_imagenet(tmp_path / "in", val=False))
    with pytest.raises(DataError, match=r"no val/ folder .*ILSVRC-2012 layout"):
        _ = data.test


def test_split_interface_on_resident_data():
    split = Split(torch.rand(10, 1, 4, 4), torch.arange(10))
    assert split.load() is split
    batches = list(split.batches(4, order=torch.tensor([9, 0, 3])))
    assert len(batches) == 1 and batches[0][1].tolist() == [9, 0, 3]
