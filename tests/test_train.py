import pytest
import torch
import torch.nn.functional as F

from robustkit.data import get_dataset
from robustkit.errors import ConfigError
from robustkit.models import get_model
from robustkit.predict import accuracy
from robustkit.training.augment import random_crop, random_flip
from robustkit.training.loop import TrainConfig, train_model

DATA = get_dataset("synthetic", num_classes=4, size=12, n_train=256, n_test=128)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_short_training_beats_chance_clearly(precision):
    model = get_model("lenet5", DATA.info, seed=0)
    untrained = accuracy(model, DATA.test)
    config = TrainConfig(epochs=6, batch_size=32, lr=0.05, precision=precision)
    result = train_model(model, DATA.train, config, info=DATA.info, test=DATA.test, progress=False)
    assert result.test_accuracy > 0.9 > untrained + 0.3  # chance is 0.25
    assert result.test_accuracy == accuracy(model, DATA.test)  # the reported figure is re-computable
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4, 5, 6]
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_same_seed_same_weights():
    def run(seed):
        model = get_model("smallcnn", DATA.info, seed=0)
        config = TrainConfig(epochs=1, batch_size=64, precision="fp32", augment=True, seed=seed)
        train_model(model, DATA.train, config, info=DATA.info, progress=False)
        return model.state_dict()["net.1.2.weight"]

    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))


def test_random_crop_matches_a_hand_written_window():
    x = torch.rand(6, 2, 5, 7)
    generator = torch.Generator().manual_seed(0)
    out = random_crop(x, 2, generator)
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):  # each output is some 5×7 window of its own padded image
        windows = [padded[i, :, dy : dy + 5, dx : dx + 7] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert not all(torch.equal(out[i], x[i]) for i in range(len(x)))


def test_random_flip_mirrors_some_images_and_keeps_the_rest():
    x = torch.rand(32, 1, 4, 4)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(32)]
    kept = [torch.equal(out[i], x[i]) for i in range(32)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and 0 < sum(flipped) < 32


def test_config_validation_and_model_recipes():
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    assert TrainConfig.for_model("resnet18").epochs == 1
    assert TrainConfig.for_model("resnet18", epochs=5, lr=None).epochs == 5
    with pytest.raises(ConfigError, match="colour"):
        TrainConfig.for_model("lenet5", colour="red")
