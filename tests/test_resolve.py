"""The model resolver through the CLI: given weights, zoo models, cache matching, and never training unasked."""

from __future__ import annotations

import importlib.util
import multiprocessing
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from robustkit.cli import main
from robustkit.data import get_dataset
from robustkit.models import get_model
from robustkit.registry import DATASETS
from robustkit.weights import cache as pipeline
from robustkit.weights import resolve as resolve_module
from robustkit.weights.cache import recipe_tag, train_and_save
from robustkit.weights.checkpoint import CheckpointRecord, file_sha256, save_checkpoint
from robustkit.weights.resolve import resolve_model

DATA = get_dataset("synthetic")
EVAL = ["evaluate", "--dataset", "synthetic", "--attack", "fgsm", "--n-samples", "8"]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def no_training(monkeypatch):
    """Any training attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("trained a model")

    monkeypatch.setattr(pipeline, "train_model", refuse)
    monkeypatch.setattr("robustkit.weights.resolve.train_and_save", refuse)


def _predictions(model, images):
    with torch.no_grad():
        return model(images).argmax(1)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_file_is_evaluated_as_written_and_nothing_trains(tmp_path, isolated_home, no_training, suffix):
    from safetensors.torch import save_file

    written = get_model("lenet5", DATA.info, seed=7).eval()
    path = tmp_path / f"w{suffix}"
    bare = {k: v.contiguous() for k, v in written.net.state_dict().items()}  # a bare network's, as other tools write
    torch.save(bare, path) if suffix == ".pth" else save_file(bare, str(path))
    out = tmp_path / "r.json"
    result = run(*EVAL, "--model", "lenet5", "--weights", str(path), "--output", str(out))
    assert result.exit_code == 0, result.output
    assert not (isolated_home / "checkpoints").exists()
    import json

    row = json.loads(out.read_text())[0]
    assert row["checkpoint"] == str(path) and row["weights"].startswith(f"file {path} sha256 ")

    loaded = resolve_model("lenet5", DATA, weights=str(path), allow_train=False).model
    images = DATA.test.images[:32]
    assert torch.equal(_predictions(loaded, images), _predictions(written, images))


def test_weights_of_another_architecture_or_missing_is_one_line(tmp_path, no_training):
    path = tmp_path / "other.pt"
    torch.save(get_model("smallcnn", DATA.info).state_dict(), path)
    result = run(*EVAL, "--model", "lenet5", "--weights", str(path))
    assert result.exit_code == 1 and "does not fit this architecture" in result.output
    assert len(result.output.strip().splitlines()) == 1
    missing = run(*EVAL, "--model", "lenet5", "--weights", str(tmp_path / "nope.pt"))
    assert missing.exit_code == 1 and "does not exist" in missing.output
    named = run(*EVAL, "--model", "lenet5", "--weights", "DEFAULT")
    assert named.exit_code == 1 and "no named weights" in named.output


def test_torchvision_weights_name_loads_the_file_in_torch_home(tmp_path, monkeypatch, no_training):
    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    enum = tvm.get_model_weights("mobilenet_v3_small").IMAGENET1K_V1
    placed = tvm.mobilenet_v3_small(num_classes=1000)
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(placed.state_dict(), folder / enum.url.rsplit("/", 1)[-1])  # hub checks the hash only on download

    found = resolve_model("torchvision:mobilenet_v3_small", DATA, weights="IMAGENET1K_V1", allow_train=False)
    assert "MobileNet_V3_Small_Weights.IMAGENET1K_V1" in found.provenance.description
    got = found.model.net[1].features[0][0].weight  # net = GreyToRGB, then torchvision's model
    assert torch.equal(got, placed.features[0][0].weight)
    bad = run(*EVAL, "--model", "torchvision:mobilenet_v3_small", "--weights", "IMAGENET9K")
    assert bad.exit_code == 1 and "has no weights 'IMAGENET9K'" in bad.output


def test_no_train_with_nothing_cached_is_one_line_and_trains_nothing(isolated_home, no_training):
    result = run(*EVAL, "--model", "lenet5", "--no-train")
    assert result.exit_code == 1, result.output
    assert "no checkpoint for (synthetic, lenet5, none)" in result.output and "robustkit train" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unknown_model_fails_before_any_other_output(caplog):
    result = run(*EVAL, "--model", "smallcn")
    assert result.exit_code == 1 and result.output.startswith("Error: unknown model 'smallcn'; did you mean smallcnn")
    assert "training" not in caplog.text
    assert run("train", "--model", "timm:resnet1888", "--dataset", "synthetic").exit_code == 1


def _cached(path, epochs, model="lenet5"):
    record = CheckpointRecord(
        model=model,
        dataset="synthetic",
        dataset_info=DATA.info.to_dict(),
        epochs=epochs,
        train_settings={"epochs": epochs},
    )
    save_checkpoint(get_model(model, DATA.info, seed=epochs), path, record)


def test_evaluate_finds_the_runners_recipe_checkpoint(isolated_home, tmp_path, no_training):
    recipe = pipeline.cache_path(DATA, "lenet5", None, {"epochs": 1, "n_train": 200})
    assert recipe.name == f"lenet5-none-{recipe_tag('lenet5', None, {'epochs': 1, 'n_train': 200})}.safetensors"
    _cached(recipe, 1)
    out = tmp_path / "r.json"
    assert run(*EVAL, "--model", "lenet5", "--no-train", "--output", str(out)).exit_code == 0
    assert str(recipe) in out.read_text()
    _cached(pipeline.cache_path(DATA, "lenet5", None, {"epochs": 3}), 3)  # two candidates: ambiguous
    two = run(*EVAL, "--model", "lenet5", "--no-train")
    assert two.exit_code == 1 and "choose one with --checkpoint" in two.output
    _cached(pipeline.cache_path(DATA, "lenet5", None), 4)  # the default recipe's comes first
    assert run(*EVAL, "--model", "lenet5", "--no-train").exit_code == 0


def test_train_never_replaces_a_checkpoint_of_another_recipe(isolated_home, tmp_path):
    default = pipeline.cache_path(DATA, "lenet5", None)
    _cached(default, 4)
    before = default.read_bytes()
    result = run(
        "train",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--out",
        str(default),
        "--epochs",
        "1",
        "--n-train",
        "64",
    )
    assert result.exit_code == 1 and "another recipe" in result.output and "--force" in result.output
    assert default.read_bytes() == before
    tagged = run("train", "--model", "lenet5", "--dataset", "synthetic", "--epochs", "1", "--n-train", "64")
    assert tagged.exit_code == 0 and default.read_bytes() == before


def test_timm_model_builds_and_evaluates(tmp_path, no_training):
    pytest.importorskip("timm", reason="the zoo extra (pip install 'robustkit[zoo]') is not installed")
    path = tmp_path / "t.pt"
    written = get_model("timm:resnet10t", DATA.info, seed=3).eval()
    torch.save(written.state_dict(), path)
    result = run(*EVAL, "--model", "timm:resnet10t", "--weights", str(path))
    assert result.exit_code == 0, result.output
    assert written.net.num_classes == 4 and written.net.conv1[0].in_channels == 1


@pytest.mark.skipif(
    importlib.util.find_spec("robustbench") is None,
    reason="robustbench (the zoo extra, pip install 'robustkit[zoo]') is not installed",
)
def test_robustbench_model_loads_from_its_cache_layout_and_evaluates(isolated_home, no_training):
    from robustkit.data.base import Split
    from robustkit.evaluation.engine import evaluate_attack
    from robustkit.models import robustbench_zoo
    from robustkit.registry import ATTACKS

    robustbench_zoo._robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    info = DATASETS.get("cifar10").static_info
    entry = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf]["Wong2020Fast"]
    torch.manual_seed(0)
    zoo_net = entry["model"]().eval()
    target = isolated_home / "robustbench" / "cifar10" / "Linf" / "Wong2020Fast.pt"
    target.parent.mkdir(parents=True)
    torch.save(zoo_net.state_dict(), target)
    model = get_model("robustbench:Wong2020Fast", info).eval()
    images = torch.rand(6, 3, 32, 32)
    assert torch.equal(_predictions(model, images), _predictions(zoo_net, images))  # no second normalisation
    assert torch.equal(model.normalize.std.flatten(), torch.ones(3))
    result = evaluate_attack(model, Split(images, _predictions(zoo_net, images)), ATTACKS.build("fgsm", eps=8 / 255))
    assert result.metrics()["clean_accuracy"] == 1.0
    from robustkit.weights import resolve

    assert (
        "robustbench Wong2020Fast cifar10/Linf (robustbench "
        in resolve._named(robustbench_zoo.describe("Wong2020Fast", info)).description
    )
    with pytest.raises(Exception, match="did you mean Carmon2019Unlabeled"):
        get_model("robustbench:Carmon2019Unlabelled", info)
    with pytest.raises(Exception, match="place its checkpoint at"):  # offline: no file, no download possible
        get_model("robustbench:Carmon2019Unlabeled", info)


def test_torchvision_pretrained_weights_bring_their_own_normalisation(tmp_path, monkeypatch):
    """Weights trained on ImageNet expect ImageNet's statistics whatever data set they are evaluated on."""
    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    enum = tvm.get_model_weights("mobilenet_v3_small").IMAGENET1K_V1
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(tvm.mobilenet_v3_small(num_classes=1000).state_dict(), folder / enum.url.rsplit("/", 1)[-1])
    colour = get_dataset("synthetic", channels=3).info  # its own statistics: 0.5 / 0.3 per channel
    pretrained = get_model("torchvision:mobilenet_v3_small", colour, weights="IMAGENET1K_V1")
    wanted = enum.transforms()
    assert torch.allclose(pretrained.normalize.mean.flatten(), torch.tensor(wanted.mean))
    assert torch.allclose(pretrained.normalize.std.flatten(), torch.tensor(wanted.std))
    bare = get_model("torchvision:mobilenet_v3_small", colour)  # no weights: the data set's statistics
    assert torch.allclose(bare.normalize.mean.flatten(), torch.tensor(colour.mean))
    grey = get_model("torchvision:mobilenet_v3_small", DATA.info, weights="IMAGENET1K_V1")  # 1 channel, repeated after
    assert torch.allclose(grey.normalize.mean.flatten(), torch.tensor(DATA.info.mean))


def _resolve_and_report(start, shas, trained):
    """A process that resolves one untrained entry, writing a line to ``trained`` if it trains."""

    def counting(*args, **kwargs):
        with open(trained, "a") as log:
            log.write("trained\n")
        return train_and_save(*args, **kwargs)

    resolve_module.train_and_save = counting
    start.wait()  # both processes find no checkpoint at the same moment
    shas.put(resolve_model("lenet5", DATA, recipe={"epochs": 1, "n_train": 64}).provenance.sha256)


def test_parallel_processes_train_an_entry_once_and_load_the_same_weights(isolated_home, tmp_path):
    """Shards run side by side (``--shard i/n``) on one missing checkpoint: one trains, the other waits
    and loads it, so every cell of the entry cites one SHA-256."""
    trained = tmp_path / "trained.txt"
    context = multiprocessing.get_context("spawn")  # not fork: a forked child of a process that ran torch can hang
    start, shas = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_resolve_and_report, args=(start, shas, trained)) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes] == [0, 0]
    assert trained.read_text() == "trained\n"
    first, second = shas.get(timeout=5), shas.get(timeout=5)
    assert first == second == file_sha256(pipeline.cache_path(DATA, "lenet5", None, {"epochs": 1, "n_train": 64}))


def test_a_setting_equal_to_the_models_own_default_trains_into_the_default_path(isolated_home):
    """Issue 23: `train --model lenet5 --lr 0.05` (lenet5's own lr) is the default recipe, so evaluate finds
    one checkpoint; only what departs from the filled-in recipe is hashed into a tag."""
    import hashlib
    import json

    from defenses import MadryTraining

    default = pipeline.cache_path(DATA, "lenet5", None)
    assert default.name == "lenet5-none.safetensors"
    assert pipeline.cache_path(DATA, "lenet5", None, {"lr": 0.05, "epochs": 4, "augment": False}) == default
    changed = pipeline.cache_path(DATA, "lenet5", None, {"lr": 0.05, "epochs": 1})
    assert (
        changed.name
        == f"lenet5-none-recipe{hashlib.sha256(json.dumps({'epochs': 1}).encode()).hexdigest()[:8]}.safetensors"
    )
    madry = MadryTraining(eps=0.1)
    assert pipeline.cache_path(DATA, "lenet5", madry, {"epochs": 10}) == pipeline.cache_path(DATA, "lenet5", madry)
    assert pipeline.cache_path(DATA, "lenet5", None, {"epochs": 10}) != default  # 10 is madry's, not lenet5's
    trained = run("train", "--model", "lenet5", "--dataset", "synthetic", "--lr", "0.05")
    assert trained.exit_code == 0, trained.output
    assert sorted(p.name for p in default.parent.glob("*.safetensors")) == [default.name]
    assert run(*EVAL, "--model", "lenet5", "--no-train").exit_code == 0
    shown = run("train", "--help").output
    assert "[0.1; lenet5 0.05]" in " ".join(shown.split()) and "lenet5 4, smallcnn 3" in " ".join(shown.split())


def test_no_train_suggests_the_command_that_makes_exactly_the_missing_checkpoint(isolated_home, monkeypatch):
    """Issue 23: evaluating madry at ε = 0.05 names `train … --eps 0.05` (not madry's default ε) and the
    --defense-eps alternative with the ε of the checkpoints that are cached; the command, run, makes the file."""
    import re
    import shlex

    from defenses import MadryTraining
    from robustkit.training.loop import TrainResult
    from robustkit.weights.missing import eps_text

    record = CheckpointRecord(
        model="lenet5",
        dataset="synthetic",
        dataset_info=DATA.info.to_dict(),
        defense="madry",
        defense_settings={"eps": 0.1, "norm": "linf"},
        epochs=4,
    )
    save_checkpoint(
        get_model("lenet5", DATA.info, seed=0), pipeline.cache_path(DATA, "lenet5", MadryTraining(eps=0.1)), record
    )
    wanted = ["--model", "lenet5", "--defense", "madry", "--eps", "0.05"]
    missing = run(*EVAL, *wanted, "--no-train")
    assert missing.exit_code == 1 and len(missing.output.strip().splitlines()) == 1
    command = re.search(r"`robustkit (train [^`]*)`", missing.output)[1]
    assert "--eps 0.05" in command and "--defense-eps (in the cache: 0.1)" in missing.output
    fake = TrainResult(history=[{"epoch": 1, "train_accuracy": 0.5, "seconds": 1.0}], test_accuracy=0.5, seconds=1.0)
    monkeypatch.setattr(MadryTraining, "fit", lambda self, model, train, **kw: fake)  # the path is what is tested
    assert run(*shlex.split(command)).exit_code == 0
    assert run(*EVAL, *wanted, "--no-train").exit_code == 0  # the checkpoint it wrote is the one that was missing
    assert (
        run(
            *EVAL, "--model", "lenet5", "--defense", "madry", "--eps", "0.05", "--defense-eps", "0.1", "--no-train"
        ).exit_code
        == 0
    )
    assert [eps_text(e) for e in (8 / 255, 0.1, 0.2, 0.05, 2 / 255)] == ["8/255", "0.1", "0.2", "0.05", "2/255"]


def test_a_changed_architecture_never_takes_a_checkpoint_of_the_one_before(isolated_home):
    """ResNet-18's stem got stride 2 below 32 px (revision 2): a revision-1 checkpoint has the same shapes and
    would load without error into the new network, so the cache names the revision and never looks at it."""
    from defenses import MadryTraining

    old = pipeline.cache_path(DATA, "lenet5", None).with_name("resnet18-none.safetensors")
    assert pipeline.cache_path(DATA, "resnet18", None).name == "resnet18-none-rev2.safetensors" != old.name
    madry = pipeline.cache_path(DATA, "resnet18", MadryTraining(eps=0.1), {"epochs": 5}).name
    assert madry.startswith("resnet18-madry-") and "-rev2-recipe" in madry
    assert pipeline.cache_path(DATA, "lenet5", None).name == "lenet5-none.safetensors"  # unchanged models: as before
    save_checkpoint(
        get_model("resnet18", DATA.info, seed=0),
        old,
        CheckpointRecord(model="resnet18", dataset=DATA.info.name, dataset_info=DATA.info.to_dict()),
    )
    calls = []
    real = pipeline.train_model
    pipeline.train_model = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        resolve_model("resnet18", DATA)  # the default recipe: the path the revision-1 file sits beside
    finally:
        pipeline.train_model = real
    assert calls == [1]  # trained anew: the revision-1 file was not taken


def test_a_checkpoint_trained_under_an_old_default_is_not_taken_for_the_new_one(monkeypatch):
    """A path names only what departs from today's defaults: when lenet5's default lr changes, the checkpoint
    trained at the old lr must not pass for the new recipe (issue 23). Its record says how it was trained."""
    from robustkit.errors import CheckpointError
    from robustkit.models import MODELS
    from robustkit.weights.cache import recipe_changes, stale_reason

    model, record, _, path = pipeline.train_and_save("lenet5", DATA, device=torch.device("cpu"))
    assert path == pipeline.cache_path(DATA, "lenet5", None) and record.train_settings["lr"] == 0.05
    assert stale_reason(path, record, DATA, "lenet5", None) is None
    assert run(*EVAL, "--model", "lenet5", "--no-train").exit_code == 0
    seeded = CheckpointRecord(**{**record.__dict__, "train_settings": {**record.train_settings, "seed": 3}})
    assert "seed 3" in stale_reason(path, seeded, DATA, "lenet5", None)  # the seed decides the weights: named too
    whole = pipeline.cache_path(
        DATA, "lenet5", None, {"n_train": len(DATA.train)}
    )  # `--n-train 512`: all of it, by number
    assert whole != path and stale_reason(whole, record, DATA, "lenet5", None) is None

    monkeypatch.setattr(MODELS.get("lenet5"), "train_recipe", {"epochs": 4, "lr": 0.02})  # the default changes
    assert pipeline.cache_path(DATA, "lenet5", None) == path  # … and the path does not
    with pytest.raises(CheckpointError, match="trained with lr 0.05"):
        resolve_model("lenet5", DATA, allow_train=False)
    stale = run(*EVAL, "--model", "lenet5", "--no-train")
    assert stale.exit_code == 1 and len(stale.output.strip().splitlines()) == 1, stale.output
    assert (
        "no longer matches the recipe" in stale.output
        and "`robustkit train --model lenet5 --dataset synthetic --force`" in stale.output
    )
    assert recipe_changes(record, pipeline.TrainConfig.for_model("lenet5"), len(DATA.train), None) == ["lr 0.05 → 0.02"]


def test_a_defense_setting_off_its_default_names_a_checkpoint_of_its_own(monkeypatch):
    """madry steps 3 trains other weights than madry's default steps 7: it gets its own path, the hint for the
    missing file names --steps 3 and writes that file, and a steps-3 file at the default path is refused."""
    import re
    import shlex

    from defenses import MadryTraining
    from robustkit.errors import CheckpointError
    from robustkit.training.loop import TrainResult
    from robustkit.weights.missing import missing_hint

    default, three = MadryTraining(eps=0.1), MadryTraining(eps=0.1, steps=3)
    assert pipeline.cache_path(DATA, "lenet5", MadryTraining(eps=0.1, steps=7)) == pipeline.cache_path(
        DATA, "lenet5", default
    )
    assert pipeline.cache_path(DATA, "lenet5", three) != pipeline.cache_path(DATA, "lenet5", default)
    assert pipeline.cache_path(DATA, "lenet5", three, {"epochs": 2}) not in {
        pipeline.cache_path(DATA, "lenet5", three),
        pipeline.cache_path(DATA, "lenet5", default, {"epochs": 2}),
    }
    command = re.search(r"`robustkit (train [^`]*)`", missing_hint("lenet5", DATA, three, None))[1]
    assert "--steps 3" in command
    fake = TrainResult(history=[{"epoch": 1, "train_accuracy": 0.5, "seconds": 1.0}], test_accuracy=0.5, seconds=1.0)
    monkeypatch.setattr(MadryTraining, "fit", lambda self, model, train, **kw: fake)  # the paths are what is tested
    assert run(*shlex.split(command)).exit_code == 0
    found = resolve_model("lenet5", DATA, defense=three, allow_train=False)
    assert (
        found.provenance.path == pipeline.cache_path(DATA, "lenet5", three)
        and found.record.defense_settings["steps"] == 3
    )

    at_default = pipeline.cache_path(DATA, "lenet5", default)  # a steps-3 training written where steps 7 belongs
    assert run(*shlex.split(command), "--out", str(at_default)).exit_code == 0
    with pytest.raises(CheckpointError, match="madry.steps 3|steps 3"):
        resolve_model("lenet5", DATA, defense=default, allow_train=False)
    replaced = run(
        "train", "--model", "lenet5", "--dataset", "synthetic", "--defense", "madry", "--out", str(at_default)
    )
    assert replaced.exit_code == 1 and "another recipe" in replaced.output  # never overwritten unasked


def test_train_waits_for_a_process_training_the_same_checkpoint(monkeypatch):
    """`robustkit train` writing into the cache takes the runner's lock (issue 23): beside a shard training the same
    file it waits rather than train a second copy at once; the resolver, which already holds the lock, passes."""
    import fcntl
    import threading
    import time

    path = pipeline.cache_path(DATA, "lenet5", None, {"epochs": 1})
    from robustkit import paths

    said = []
    monkeypatch.setattr(pipeline.log, "info", lambda message, *args: said.append(message % args))
    paths.lock_path(path).parent.mkdir(parents=True)
    with open(paths.lock_path(path), "a") as other:  # the other process's hold
        fcntl.flock(other, fcntl.LOCK_EX)
        done = []
        worker = threading.Thread(
            target=lambda: done.append(run("train", "--model", "lenet5", "--dataset", "synthetic", "--epochs", "1"))
        )
        worker.start()
        deadline = time.monotonic() + 60
        while not any("another process is training" in line for line in said) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"another process is training {path.name}; waiting for it" in said and not path.exists() and not done
    worker.join(120)
    assert done and done[0].exit_code == 0 and path.is_file()
    assert resolve_model("lenet5", DATA, recipe={"epochs": 1}, allow_train=False).provenance.path == path
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # the lock lives under locks/, not beside it


TINY_TRAIN = ["train", "--model", "lenet5", "--dataset", "synthetic", "--epochs", "1", "--n-train", "64"]


def test_a_retrain_with_identical_weights_is_said_and_shares_its_cells(tmp_path):
    """Issue 33, item 10: training twice gives two files (each header holds its run's time and speed) with
    the same weights; the second run says so, and either file, evaluated, is one cell: one key."""
    import hashlib
    import json
    import shutil

    from robustkit.weights.checkpoint import read_checkpoint

    assert run(*TINY_TRAIN).exit_code == 0
    path = pipeline.cache_path(DATA, "lenet5", None, {"epochs": 1, "n_train": 64})
    first = Path(shutil.copy(path, tmp_path / "first.safetensors"))
    again = run(*TINY_TRAIN)
    assert again.exit_code == 0 and "weights identical to the cached checkpoint's" in again.output, again.output
    files = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (first, path)]
    assert files[0] != files[1]
    one, two = read_checkpoint(first)[0], read_checkpoint(path)[0]
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
    records = []
    for file in (first, path):
        out = tmp_path / f"{file.stem}.json"
        assert run(*EVAL, "--model", "lenet5", "--checkpoint", str(file), "--output", str(out)).exit_code == 0
        records.append(json.loads(out.read_text())[0])
    assert [r["checkpoint_sha256"] for r in records] == files  # each record cites its own file, whole
    assert records[0]["weights_sha256"] == records[1]["weights_sha256"] and records[0]["key"] == records[1]["key"]
    module = resolve_model("lenet5", DATA, checkpoint=first).model  # the same weights in memory: the same cell
    from robustkit import evaluate_model

    assert evaluate_model(module, "synthetic", "fgsm", n_samples=8, progress=False).record["key"] == records[0]["key"]


def test_a_refusal_names_what_differs_and_the_seed_names_a_file_of_its_own():
    """Issue 33, item 11: `train --seed 1` where a seed-0 checkpoint lies is refused naming `seed 0 → 1`; without
    --out the seed is part of the recipe's file name, as every other setting is, so both checkpoints stay."""
    from robustkit.weights.checkpoint import read_record
    from robustkit.weights.missing import missing_hint

    assert run(*TINY_TRAIN).exit_code == 0
    path = pipeline.cache_path(DATA, "lenet5", None, {"epochs": 1, "n_train": 64})
    refused = run(*TINY_TRAIN, "--seed", "1", "--out", str(path))
    assert refused.exit_code == 1 and "(seed 0 → 1;" in refused.output and "--force" in refused.output, refused.output
    assert run(*TINY_TRAIN, "--seed", "1").exit_code == 0
    seeded = pipeline.cache_path(DATA, "lenet5", None, {"epochs": 1, "n_train": 64, "seed": 1})
    assert seeded != path and read_record(seeded).seed == 1 and read_record(path).seed == 0
    assert (
        pipeline.cache_path(DATA, "lenet5", None, {"epochs": 1, "n_train": 64, "seed": 0}) == path
    )  # 0 is the default
    assert "--seed 1" in missing_hint("lenet5", DATA, None, {"seed": 1})
