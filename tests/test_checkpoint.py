import os
import pickle

import pytest
import torch

from robustkit import paths
from robustkit.data import get_dataset
from robustkit.errors import CheckpointError
from robustkit.weights.checkpoint import CheckpointRecord, load_model, read_checkpoint, save_checkpoint

INFO = get_dataset("synthetic", size=12).info


def record(model: str = "lenet5", **kw) -> CheckpointRecord:
    return CheckpointRecord(model=model, dataset="synthetic", dataset_info=INFO.to_dict(), epochs=1, seed=3, **kw)


@pytest.fixture
def saved(tmp_path):
    from robustkit.models import get_model

    model = get_model("lenet5", INFO, seed=0).eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors", record(clean_accuracy=0.75))
    return model, path


def test_round_trip_rebuilds_the_model_from_its_record(saved):
    model, path = saved
    loaded, rec = load_model(path)
    x = torch.rand(4, *INFO.input_shape)
    assert torch.equal(loaded(x), model(x))
    assert not loaded.training
    assert rec.model == "lenet5" and rec.clean_accuracy == 0.75 and rec.seed == 3
    assert rec.info == INFO and rec.torch_version == torch.__version__
    assert os.listdir(path.parent) == ["m.safetensors"]  # no temporary file left behind


def test_cache_path_names_dataset_model_and_defense(isolated_home):
    path = paths.checkpoint_path("fashion-mnist", "smallcnn", "madry", tag="eps=0.1")
    assert path == isolated_home / "checkpoints" / "fashion-mnist" / "smallcnn-madry-eps=0.1.safetensors"


def test_wrong_architecture_is_one_line(saved):
    _, path = saved
    with pytest.raises(CheckpointError) as err:
        load_model(path, model="smallcnn")
    assert "holds a 'lenet5'" in str(err.value)
    state, _ = read_checkpoint(path)
    from robustkit.models import get_model
    from robustkit.weights.checkpoint import load_weights

    with pytest.raises(CheckpointError) as err:
        load_weights(get_model("smallcnn", INFO), state, path)
    assert "does not fit" in str(err.value) and "\n" not in str(err.value)


def test_truncated_checkpoint_is_refused(saved, tmp_path):
    _, path = saved
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(cut)


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_with_code_is_refused_and_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    with evil.open("wb") as f:
        pickle.dump({"weight": Payload()}, f)
    torch.save({"w": torch.zeros(1), "x": Payload()}, tmp_path / "evil2.pt")
    for path in (evil, tmp_path / "evil2.pt"):
        with pytest.raises(CheckpointError, match="refused|not a readable"):
            read_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


def test_foreign_state_dict_of_a_bare_network_loads(tmp_path):
    from robustkit.models import get_model

    donor = get_model("lenet5", INFO, seed=1)
    torch.save(donor.net.state_dict(), tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="no robustkit metadata"):
        load_model(tmp_path / "bare.pth")
    loaded, rec = load_model(tmp_path / "bare.pth", model="lenet5", info=INFO)
    x = torch.rand(2, *INFO.input_shape)
    assert rec is None and torch.equal(loaded(x), donor.eval()(x))


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.safetensors")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "junk.pt")
