import pytest
import torch
import torchvision
from torch import nn

from robustkit.data import get_dataset
from robustkit.data.base import DatasetInfo
from robustkit.errors import UnknownNameError
from robustkit.models import MODELS, get_model, model_name, train_recipe
from robustkit.registry import DATASETS


def dataset_infos() -> dict[str, DatasetInfo]:
    """Each resident data set's shape, plus a large-image shape for the ImageNet-style stems (the data sets that
    stream from files, imagefolder and imagenet, need their folders to have a shape)."""
    infos = {name: get_dataset(name).info for name in DATASETS.list() if not DATASETS.get(name).streams}
    infos["imagefolder-96px"] = DatasetInfo("imagefolder", 5, (3, 96, 96), tuple("abcde"), (0.5,) * 3, (0.25,) * 3)
    return infos


INFOS = dataset_infos()


@pytest.mark.parametrize("dataset", sorted(INFOS))
@pytest.mark.parametrize("name", MODELS.list())
def test_every_model_builds_and_trains_on_every_dataset_shape(name, dataset):
    info = INFOS[dataset]
    model = get_model(name, info, seed=0)
    x = torch.rand(2, *info.input_shape)
    logits = model(x)
    assert logits.shape == (2, info.num_classes)
    logits.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert isinstance(train_recipe(name), dict)
    assert model_name(model) == name  # what records call it (issue 23: not "Sequential")


def test_normalisation_is_the_first_layer():
    info = INFOS["cifar10"]
    model = get_model("lenet5", info, seed=0).eval()
    x = torch.rand(3, 3, 32, 32)
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    assert torch.allclose(model(x), model.net((x - mean) / std), atol=1e-6)
    assert {"normalize.mean", "normalize.std"} <= set(model.state_dict())


def test_seed_makes_weights_reproducible_without_touching_global_rng():
    info = INFOS["fashion-mnist"]
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = get_model("smallcnn", info, seed=7), get_model("smallcnn", info, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    c = get_model("smallcnn", info, seed=8)
    wa, wb, wc = (m.state_dict()["net.0.0.weight"] for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_resnet18_uses_the_cifar_stem_only_for_small_inputs():
    """3×3 and no max-pool up to 64 px: stride 1 at CIFAR size (the common CIFAR ResNet-18), stride 2
    below 32 px (MNIST-size: a quarter of the compute, issue 23's first run); ImageNet's stem above."""
    mnist = get_model("resnet18", INFOS["fashion-mnist"]).net
    cifar = get_model("resnet18", INFOS["cifar10"]).net
    large = get_model("resnet18", INFOS["imagefolder-96px"]).net
    for small, stride in ((mnist, 2), (cifar, 1)):
        assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (stride, stride)
        assert isinstance(small.maxpool, nn.Identity)
    assert large.conv1.kernel_size == (7, 7) and isinstance(large.maxpool, nn.MaxPool2d)
    features = {}
    mnist.layer4.register_forward_hook(lambda module, inputs, output: features.update(last=output.shape))
    mnist(torch.rand(1, 1, 28, 28))
    assert features["last"] == (1, 512, 2, 2)  # 28 → 14 → 7 → 4 → 2


def test_any_torchvision_classifier_by_name():
    model = get_model("torchvision:mobilenet_v3_small", INFOS["fashion-mnist"])
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(UnknownNameError, match="torchvision:resnet18"):
        get_model("torchvision:resnet81", INFOS["fashion-mnist"])


def test_pretrained_torchvision_weights_load_from_the_cache(tmp_path, monkeypatch):
    """No hub here: the test plays the hub by putting a weights file where torchvision caches it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    reference = torchvision.models.resnet18()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / weights.url.rsplit("/", 1)[-1])

    model = get_model("torchvision:resnet18", INFOS["cifar10"], weights="DEFAULT").net
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
    assert model.fc.out_features == 10  # the 1000-class head was replaced for this data set


def test_a_library_models_name_survives_and_a_plain_module_is_named_by_its_class():
    assert model_name(get_model("torchvision:resnet18", INFOS["cifar10"], seed=0)) == "torchvision:resnet18"
    assert model_name(torch.nn.Linear(2, 2)) == "Linear"
