"""The issue's done-when path at small size: a 1000-class torchvision model on a partial ImageNet tree, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from robustkit.cli import main
from robustkit.data import get_dataset
from robustkit.data.imagenet import ilsvrc_wnids
from robustkit.weights import cache as pipeline

WNIDS = ilsvrc_wnids()
PRESENT = (WNIDS[300], WNIDS[999])  # labels 300 and 999 of the 1000, not 0 and 1 of the folders present


def make_tree(root: Path, per_class: int = 4, splits: tuple[str, ...] = ("train", "val")) -> Path:
    """ILSVRC-2012's layout with two of its classes: train/<wnid>/*.JPEG and val/<wnid>/*.JPEG."""
    from PIL import Image

    for split in splits:
        for c, wnid in enumerate(PRESENT):
            (root / split / wnid).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (90, 70), (60 * i, 120 * c, 200)).save(root / split / wnid / f"{wnid}_{i}.JPEG")
    return root


def test_ilsvrc_wnids_are_the_standard_sorted_1000():
    assert len(WNIDS) == 1000 == len(set(WNIDS)) and list(WNIDS) == sorted(WNIDS) and WNIDS[0] == "n01440764"
    timm_list = Path(pytest.importorskip("timm").__file__).parent / "data" / "_info" / "imagenet_synsets.txt"
    if timm_list.is_file():  # the copy is timm's list
        assert tuple(timm_list.read_text().split()) == WNIDS


def test_partial_tree_keeps_the_1000_class_labels(tmp_path):
    data = get_dataset("imagenet", data_dir=make_tree(tmp_path / "in"), image_size=32, workers=0)
    assert data.info.num_classes == 1000 and data.info.class_names[0] == "tench"
    assert data.test.labels.tolist() == [300] * 4 + [999] * 4 and data.train.labels.unique().tolist() == [300, 999]


def test_imagenet_defaults_to_robustkit_data(tmp_path, monkeypatch):
    make_tree(tmp_path / "imagenet")
    monkeypatch.setenv("ROBUSTKIT_DATA", str(tmp_path))
    assert len(get_dataset("imagenet", image_size=32).test) == 8


def test_evaluate_torchvision_weights_file_on_imagenet_tree(tmp_path, monkeypatch):
    """``evaluate --model torchvision:resnet18 --weights FILE --dataset imagenet``: evaluated, verified, nothing
    trained, on a tree holding only ``val/`` (evaluation never opens the training split)."""
    import torchvision.models as tvm

    def refuse(*args, **kwargs):
        raise AssertionError("trained a model")

    monkeypatch.setattr(pipeline, "train_model", refuse)
    monkeypatch.setattr("robustkit.weights.resolve.train_and_save", refuse)
    net = tvm.resnet18(num_classes=1000)
    with torch.no_grad():  # predicts class 300 for every image: clean accuracy 0.5 only if the labels are ImageNet's
        net.fc.weight.mul_(1e-3)
        net.fc.bias.zero_()[300] = 10.0
    weights = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), weights)
    out = tmp_path / "runs.json"
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--model",
            "torchvision:resnet18",
            "--weights",
            str(weights),
            "--dataset",
            "imagenet",
            "--data-dir",
            str(make_tree(tmp_path / "in", splits=("val",))),
            "--attack",
            "fgsm",
            "--eps",
            "4/255",
            "--n-samples",
            "8",
            "--image-size",
            "64",
            "--workers",
            "0",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())[0]
    assert row["dataset"] == "imagenet" and row["n"] == 8 and row["n_unverified"] == 0
    assert row["clean_accuracy"] == 0.5 and row["robust_accuracy"] == 0.5
    assert row["checkpoint"] == str(weights) and row["weights"].startswith(f"file {weights} sha256 ")
    assert abs(row["eps"] - 4 / 255) < 1e-9
