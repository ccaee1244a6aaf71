import gzip
import struct
from pathlib import Path

import pytest
import torch

from robustkit.data import fashion_mnist, get_dataset
from robustkit.data.base import Split
from robustkit.errors import ConfigError, DataError, UnknownNameError
from robustkit.registry import DATASETS


def write_idx_pair(folder: Path, prefix: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    img = bytes([0, 0, 8, 3]) + struct.pack(">3I", n, h, w) + images.numpy().tobytes()
    lab = bytes([0, 0, 8, 1]) + struct.pack(">I", n) + labels.numpy().tobytes()
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(img))
    (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(lab))


@pytest.fixture
def no_system_copy(monkeypatch, tmp_path):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "nowhere")


@pytest.fixture
def tiny_fashion(tmp_path, no_system_copy):
    images = torch.randint(0, 256, (5, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    labels = torch.tensor([3, 1, 4, 1, 5], dtype=torch.uint8)
    write_idx_pair(tmp_path / "fm", "train", images, labels)
    write_idx_pair(tmp_path / "fm", "t10k", images[:2], labels[:2])
    return tmp_path / "fm", images, labels


def test_fashion_mnist_reads_idx_files_into_float_tensors(tiny_fashion):
    folder, images, labels = tiny_fashion
    data = get_dataset("fashion-mnist", data_dir=folder)
    train = data.train
    assert train.images.shape == (5, 1, 28, 28) and train.images.dtype == torch.float32
    assert torch.equal(train.images, images.unsqueeze(1).float() / 255)
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == labels.tolist()
    assert len(data.test) == 2


def test_a_data_dir_is_the_only_place_looked_and_the_environment_comes_before_the_system_copy(
    tiny_fashion, monkeypatch, tmp_path
):
    folder, _, _ = tiny_fashion
    monkeypatch.setenv("ROBUSTKIT_DATA", str(tmp_path / "env"))
    assert all(folder in d.parents or d == folder for d in get_dataset("fashion-mnist", data_dir=folder).search_dirs())
    dirs = get_dataset("fashion-mnist").search_dirs()
    assert dirs.index(tmp_path / "env") < dirs.index(fashion_mnist.DEBIAN_DIR)
    # the environment variable alone is enough
    monkeypatch.setenv("ROBUSTKIT_DATA", str(folder))
    assert len(get_dataset("fashion-mnist").train) == 5


def test_missing_fashion_mnist_says_where_it_looked_and_how_to_get_it(tmp_path, no_system_copy):
    with pytest.raises(DataError) as err:
        _ = get_dataset("fashion-mnist").train
    message = str(err.value)
    assert "\n" not in message and "apt-get install dataset-fashion-mnist" in message and "--download" in message


def test_a_data_dir_without_the_files_is_one_line_naming_them_and_never_falls_back(tmp_path, monkeypatch):
    """The system copy and $ROBUSTKIT_DATA exist, but a folder named on purpose is the only one read."""
    elsewhere = tmp_path / "elsewhere"
    write_idx_pair(elsewhere, "t10k", torch.zeros(2, 28, 28, dtype=torch.uint8), torch.zeros(2, dtype=torch.uint8))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", elsewhere)
    monkeypatch.setenv("ROBUSTKIT_DATA", str(elsewhere))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "t10k-images-idx3-ubyte.gz").write_bytes(b"")  # one of the two is there
    with pytest.raises(DataError) as err:
        _ = get_dataset("fashion-mnist", data_dir=tmp_path / "empty").test
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "empty") in message
    assert "t10k-labels-idx1-ubyte" in message and "t10k-images" not in message
    assert len(get_dataset("fashion-mnist").test) == 2  # without --data-dir the other copies are found


def test_the_files_read_are_named(tiny_fashion):
    folder, _, _ = tiny_fashion
    data = get_dataset("fashion-mnist", data_dir=folder)
    assert data.files_read("test") == (
        str(folder / "t10k-images-idx3-ubyte.gz"),
        str(folder / "t10k-labels-idx1-ubyte.gz"),
    )


@pytest.mark.skipif(not fashion_mnist.DEBIAN_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_matches_its_published_statistics():
    data = get_dataset("fashion-mnist")
    train, test = data.train, data.test
    assert train.images.shape == (60000, 1, 28, 28) and len(test) == 10000
    assert torch.bincount(train.labels).tolist() == [6000] * 10  # balanced by construction
    assert 0.0 <= train.images.min() and train.images.max() <= 1.0
    # the metadata's mean/std are what the data really has
    assert train.images.mean().item() == pytest.approx(data.info.mean[0], abs=1e-3)
    assert train.images.std().item() == pytest.approx(data.info.std[0], abs=1e-3)


def test_torchvision_sets_without_files_get_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="--download"):
        _ = get_dataset("cifar10", data_dir=tmp_path).test


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100"])
def test_torchvision_set_metadata_is_consistent(name):
    info = get_dataset(name).info
    assert len(info.class_names) == info.num_classes == len(set(info.class_names))


def test_synthetic_is_deterministic_and_shaped():
    a = get_dataset("synthetic", num_classes=3, channels=3, size=8, n_train=20, n_test=10, seed=5)
    b = get_dataset("synthetic", num_classes=3, channels=3, size=8, n_train=20, n_test=10, seed=5)
    assert a.train.images.shape == (20, 3, 8, 8) and len(a.test) == 10
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.images[:10], a.test.images)
    assert 0 <= a.train.images.min() and a.train.images.max() <= 1
    c = get_dataset("synthetic", num_classes=3, channels=3, size=8, n_train=20, n_test=10, seed=6)
    assert not torch.equal(a.train.images, c.train.images)


def test_evaluation_subset_is_fixed_by_seed():
    split = Split(torch.rand(50, 1, 4, 4), torch.arange(50))
    first, again = split.subset(10, seed=1), split.subset(10, seed=1)
    assert torch.equal(first.labels, again.labels) and len(first) == 10
    assert first.labels.tolist() == sorted(first.labels.tolist())  # data order kept
    assert not torch.equal(first.labels, split.subset(10, seed=2).labels)
    assert torch.equal(first.images, split.images[first.labels])  # images travel with their labels
    assert split.subset(None) is split and split.subset(500) is split
    with pytest.raises(ConfigError):
        split.subset(0)


def test_imagefolder_reads_resizes_and_splits(tmp_path):
    from PIL import Image

    for cls, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        for i in range(5):
            (tmp_path / "root" / cls).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 30), colour).save(tmp_path / "root" / cls / f"{i}.png")
    data = get_dataset("imagefolder", data_dir=tmp_path / "root", image_size=16, workers=0)
    assert data.info.class_names == ("cats", "dogs") and data.info.input_shape == (3, 16, 16)
    train, test = data.train.load(), data.test
    assert len(train) == 8 and len(test) == 2 and train.images.shape[1:] == (3, 16, 16)
    red = train.images[train.labels == 0]
    assert torch.allclose(red[:, 0], torch.ones(1)) and torch.allclose(red[:, 2], torch.zeros(1))


def test_imagefolder_without_a_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="--data-dir"):
        get_dataset("imagefolder", data_dir=tmp_path / "missing")


def test_unknown_dataset_and_setting():
    with pytest.raises(UnknownNameError, match="fashion-mnist"):
        get_dataset("fashion-mnsit")
    with pytest.raises(ConfigError):
        get_dataset("synthetic", colour="red")
    assert {"fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder", "synthetic"} <= set(DATASETS)


@pytest.mark.parametrize("flag, value", [("--image-size", "64"), ("--workers", "2")])
def test_streaming_settings_on_a_resident_data_set_are_one_clear_line(flag, value):
    from click.testing import CliRunner

    from robustkit.cli import main

    result = CliRunner().invoke(main, ["evaluate", "--model", "lenet5", "--dataset", "fashion-mnist", flag, value])
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == f"Error: fashion-mnist is resident and 28×28: {flag} applies to imagefolder and imagenet"
    )


def test_suite_dataset_options_a_data_set_does_not_take_fail_at_load(tmp_path):
    import yaml

    from robustkit.suites.spec import load_suite

    suite = {
        "dataset": "synthetic",
        "dataset_options": {"image_size": 32},
        "models": [{"model": "lenet5"}],
        "attacks": [{"attack": "fgsm", "eps": 0.1}],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    with pytest.raises(
        ConfigError,
        match=r"dataset_options: synthetic is resident and 16×16: image_size applies to "
        r"imagefolder and imagenet",
    ):
        load_suite(tmp_path / "s.yaml")


def test_the_record_names_the_data_files_read(tiny_fashion):
    from robustkit import evaluate_model
    from robustkit.models import get_model

    folder, _, _ = tiny_fashion
    data = get_dataset("fashion-mnist", data_dir=folder)
    report = evaluate_model(get_model("lenet5", data.info), data, "fgsm", n_samples=2, checks="none", progress=False)
    assert report.record["extra"]["data_files"] == [
        str(folder / "t10k-images-idx3-ubyte.gz"),
        str(folder / "t10k-labels-idx1-ubyte.gz"),
    ]
