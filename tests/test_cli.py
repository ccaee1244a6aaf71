import pytest
from cli_fixtures import train_once
from click.testing import CliRunner

from robustkit import __version__
from robustkit.cli import main
from robustkit.data import get_dataset
from robustkit.predict import accuracy
from robustkit.results.intervals import proportion_interval
from robustkit.weights.cache import recipe_tag
from robustkit.weights.checkpoint import load_model


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("command", [[]] + [[name] for name in main.commands])
def test_help_on_every_command(command):
    result = run(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_version():
    assert __version__ in run("--version").output


@pytest.mark.parametrize("kind", ["models", "datasets", "attacks", "defenses"])
def test_list(kind):
    result = run("list", kind)
    assert result.exit_code == 0
    if kind == "models":
        assert "resnet18" in result.output and "torchvision:<name>" in result.output
    if kind == "datasets":
        assert "fashion-mnist" in result.output
    assert "smallcnn" in run("list", "models", "small*").output
    assert "lenet5" not in run("list", "models", "small*").output


def test_threads_sets_pytorchs_cpu_threads_and_refuses_zero(tiny_checkpoint):
    import torch

    before = torch.get_num_threads()
    args = [
        "evaluate",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(tiny_checkpoint),
        "--attack",
        "fgsm",
        "--n-samples",
        "8",
    ]
    try:
        wanted = 1 if before != 1 else 2
        assert run(*args, "--threads", str(wanted)).exit_code == 0
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)
    refused = run(*args, "--threads", "0")
    assert refused.exit_code == 2 and "--threads" in refused.output


def test_train_end_to_end_on_synthetic(tmp_path):
    out = tmp_path / "tiny.safetensors"
    result = run(
        "train",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--epochs",
        "6",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--precision",
        "fp32",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "test acc" in result.output and str(out) in result.output
    model, record = load_model(out)
    test = get_dataset("synthetic").test
    recomputed = accuracy(model, test)
    assert record.clean_accuracy == pytest.approx(recomputed) and recomputed > 0.9
    correct = sum(int((model.eval()(x).argmax(1) == y).sum()) for x, y in test.batches(256))
    assert (
        f"{correct / len(test):.4f} {proportion_interval(correct, len(test)).text()}" in result.output
    )  # test acc [95 % CI]
    assert record.model == "lenet5" and record.epochs == 6 and record.train_settings["precision"] == "fp32"


def test_train_saves_into_the_cache_by_default_at_a_recipe_path_of_its_own(isolated_home):
    result = run("train", "--model", "lenet5", "--dataset", "synthetic", "--epochs", "1")
    assert result.exit_code == 0, result.output
    folder = isolated_home / "checkpoints" / "synthetic"
    assert [p.name for p in folder.glob("lenet5-none*.safetensors")] == [
        f"lenet5-none-{recipe_tag('lenet5', None, {'epochs': 1})}.safetensors"
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--model", "resnt18", "--dataset", "synthetic"], "did you mean resnet18"),
        (["train", "--model", "lenet5", "--dataset", "synthetik"], "did you mean synthetic"),
        (["train", "--model", "lenet5", "--dataset", "cifar10", "--data-dir", "/nonexistent"], "--download"),
        (["train", "--model", "lenet5", "--device", "cuda:7", "--dataset", "synthetic"], "device"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, message):
    result = run(*args)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert result.output.startswith("Error:") and result.output.count("\n") == 1


@pytest.mark.slow
def test_smallcnn_on_real_fashion_mnist():
    from robustkit.data import fashion_mnist

    if not fashion_mnist.DEBIAN_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist not installed")
    result = run("train", "--model", "smallcnn", "--epochs", "1", "--n-train", "20000")
    assert result.exit_code == 0, result.output
    _, record = load_model(next(__import__("robustkit").paths.home().glob("checkpoints/fashion-mnist/*.safetensors")))
    assert record.clean_accuracy > 0.85


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """Trained once per module (in its own home): the tests only read it."""
    return train_once(
        tmp_path_factory,
        "tiny",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--epochs",
        "6",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--precision",
        "fp32",
    )


def test_evaluate_end_to_end_on_synthetic(tiny_checkpoint, tmp_path):
    import hashlib
    import json

    out = tmp_path / "records.json"
    args = [
        "evaluate",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(tiny_checkpoint),
        "--eps",
        "40/255",
        "--n-samples",
        "64",
        "--output",
        str(out),
        "--save-examples",
        str(tmp_path / "ex"),
    ]
    result = run(*args, "--attack", "pgd", "--steps", "5")
    assert result.exit_code == 0, result.output
    assert run(*args, "--attack", "fgsm").exit_code == 0
    assert run(*args, "--attack", "fgsm", "--eps", "0").exit_code == 0  # nothing broken: norms are NaN
    records = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert [r["attack"] for r in records] == ["pgd", "fgsm", "fgsm"]
    assert records[2]["median_norm"] is None and records[2]["robust_accuracy"] == records[2]["clean_accuracy"]
    pgd = records[0]
    assert pgd["n"] == 64 and pgd["eps"] == pytest.approx(40 / 255) and pgd["n_unverified"] == 0
    assert 0 <= pgd["robust_accuracy"] < pgd["clean_accuracy"]
    assert pgd["checkpoint_sha256"] == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()  # what sha256sum says
    assert json.loads(pgd["settings"])["steps"] == 5
    assert list((tmp_path / "ex").glob("*.png"))


def test_evaluate_trains_and_caches_a_missing_checkpoint(isolated_home, tmp_path):
    args = [
        "evaluate",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--n-samples",
        "16",
        "--output",
        str(tmp_path / "r.csv"),
    ]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert (isolated_home / "checkpoints" / "synthetic" / "lenet5-none.safetensors").is_file()
    again = run(*args)  # the second run finds the cached checkpoint and appends a second row
    assert again.exit_code == 0 and len((tmp_path / "r.csv").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--attack", "pgdd"], "did you mean pgd"),
        (["--eps", "8/0"], "eps must be"),
        (["--attack", "fgsm", "--steps", "3"], "unexpected keyword argument 'steps'"),
        (["--defense", "madri"], "unknown defense"),
        (["--output", "x.txt"], ".csv or .json"),
        (["--output", "/proc/forbidden/r.csv"], "cannot append"),
        (["--step-size", "fast"], "step size must be"),
    ],
)
def test_evaluate_user_errors(tiny_checkpoint, extra, message):
    base = ["evaluate", "--model", "lenet5", "--dataset", "synthetic", "--n-samples", "8"]
    if "--defense" not in extra:
        base += ["--checkpoint", str(tiny_checkpoint)]
    result = run(*base, *extra)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


def test_evaluate_one_pixel_through_the_cli(tiny_checkpoint, tmp_path):
    import json

    out = tmp_path / "r.json"
    result = run(
        "evaluate",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(tiny_checkpoint),
        "--attack",
        "one-pixel",
        "--pixels",
        "3",
        "--population",
        "16",
        "--generations",
        "3",
        "--n-samples",
        "16",
        "--output",
        str(out),
    )
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())[0]
    assert record["norm"] == "l0" and record["eps"] == 3 and record["n_unverified"] == 0
    assert record["median_norm"] is None or record["median_norm"] <= 3
    bad = run(
        "evaluate",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(tiny_checkpoint),
        "--attack",
        "pgd",
        "--pixels",
        "2",
    )
    assert bad.exit_code == 1 and "L0 budget" in bad.output


def test_evaluate_sparse_rs_through_the_cli_takes_the_l0_defaults(tiny_checkpoint, tmp_path):
    import json

    out = tmp_path / "r.json"
    base = [
        "evaluate",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(tiny_checkpoint),
        "--attack",
        "sparse-rs",
        "--n-samples",
        "16",
    ]
    result = run(*base, "-o", "queries=40", "--output", str(out))  # no --norm, no budget: l0, one pixel
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())[0]
    assert record["norm"] == "l0" and record["eps"] == 1 and record["n_unverified"] == 0
    assert json.loads(record["settings"])["queries"] == 40
    result = run(*base, "--pixels", "3", "-o", "queries=40", "-o", "alpha_init=0.5", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())[1]["eps"] == 3
    for extra, message in [
        (["--pixels", "300"], "k = 300 pixels is more than the image's 16×16 = 256 positions"),
        (["-o", "queries=0"], "queries ≥ 1"),
        (["--norm", "linf"], "SparseRS attacks l0, not 'linf'"),
    ]:
        bad = run(*base, *extra)
        assert bad.exit_code == 1 and message in bad.output and "Traceback" not in bad.output, bad.output


def test_evaluate_universal_fits_on_training_images_and_reloads_its_saved_delta_with_its_settings(
    tiny_checkpoint, tmp_path
):
    import json
    from pathlib import Path

    out = tmp_path / "r.json"
    base = [
        "evaluate",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(tiny_checkpoint),
        "--attack",
        "universal",
        "--n-samples",
        "32",
        "--output",
        str(out),
    ]
    result = run(
        *base,
        "--eps",
        "0.25",
        "--fit-samples",
        "128",
        "-o",
        "max_passes=3",
        "-o",
        "fooling_goal=0.5",
        "--save-examples",
        str(tmp_path / "ex"),
    )
    assert result.exit_code == 0, result.output
    fitted = json.loads(out.read_text())[0]
    figures = json.loads(fitted["extra"])
    assert figures["fit_samples"] == 128 and 0 <= figures["fit_fooling_rate"] <= 1 and 0 <= figures["fooling_rate"] <= 1
    assert figures["perturbation_norm"] <= 0.25 + 1e-6 and fitted["n_unverified"] == 0
    assert json.loads(fitted["settings"])["max_passes"] == 3
    saved = Path(figures["perturbation_file"])
    assert saved.parent == tmp_path / "ex" and saved.with_suffix(".png").is_file()

    again = run(*base, "--perturbation", str(saved))  # ε and norm come from the file; nothing is fitted
    assert again.exit_code == 0, again.output
    applied = json.loads(out.read_text())[1]
    applied_figures = json.loads(applied["extra"])
    assert "fit_samples" not in applied_figures
    assert applied_figures["perturbation_sha256"] == figures["perturbation_sha256"]
    for key in ("eps", "norm", "robust_accuracy", "settings"):  # as fitted, not the defaults
        assert applied[key] == fitted[key], key
    assert applied_figures["fooling_rate"] == figures["fooling_rate"]
    assert json.loads(applied["settings"])["fooling_goal"] == 0.5
    for extra, message in [
        (["-o", "fooling_goal=0.9"], "was fitted with fooling_goal=0.5"),
        (["--attack", "pgd"], "made by --attack universal"),
    ]:
        refused = run(*base, "--perturbation", str(saved), *extra)
        assert refused.exit_code == 1 and message in refused.output, refused.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-o", "steps"], "KEY=VALUE"),
        (["--steps", "3", "-o", "steps=4"], "set twice"),
        (["-o", "restarts=[1]"], "number, word or boolean"),
    ],
)
def test_attack_options_are_checked(tiny_checkpoint, extra, message):
    result = run(
        "evaluate",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(tiny_checkpoint),
        "--n-samples",
        "8",
        *extra,
    )
    assert result.exit_code == 1 and message in result.output, result.output
    ok = run(
        "evaluate",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(tiny_checkpoint),
        "--n-samples",
        "8",
        "-o",
        "restarts=2",
        "-o",
        "step-size=1/50",
    )
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(
    "option, message",
    [
        ("steps=abc", "steps must be a whole number, got 'abc'"),
        ("bpda=maybe", "bpda must be true or false, got 'maybe'"),
        ("step_size=fast", "step_size must be a number, got 'fast'"),
        ("loss=3", "loss must be a word, got 3"),
    ],
)
def test_attack_option_types_are_checked_in_one_line(tiny_checkpoint, option, message):
    result = run(
        "evaluate",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(tiny_checkpoint),
        "--n-samples",
        "8",
        "-o",
        option,
    )
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output == f"Error: attack 'pgd': {message}\n"


@pytest.mark.parametrize(
    "args, warned",
    [
        (["--eps", "25"], "linf ε = 25 ≥ 1 covers the whole [0, 1] input box"),
        (["--eps", "1"], "linf ε = 1 ≥ 1 covers"),
        (["--eps", "0.99"], None),
        (["--norm", "l2", "--eps", "16"], "l2 ε = 16 ≥ the box's diameter √256 = 16"),
        (["--norm", "l2", "--eps", "15.9"], None),
    ],
)
def test_a_budget_covering_the_whole_box_is_pointed_out(tiny_checkpoint, args, warned):
    result = run(
        "evaluate",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(tiny_checkpoint),
        "--n-samples",
        "8",
        "--attack",
        "fgsm",
        *args,
    )
    assert result.exit_code == 0, result.output
    if warned:
        assert warned in result.output and ("25/255" in result.output) == ("25" in args)
    else:
        assert "covers the whole" not in result.output


@pytest.mark.parametrize(
    "args, refused, fits",
    [
        (["--attack", "patch", "--eps", "40"], "a patch of side 40 does not fit a 16×16 image", ["--eps", "16"]),
        (
            ["--attack", "sparse-rs", "--pixels", "1000", "-o", "queries=2"],
            "sparse-rs: k = 1000 pixels is more than the image's 16×16 = 256 positions",
            ["--pixels", "256"],
        ),
    ],
)
def test_a_budget_that_cannot_run_is_refused_alone_before_any_warning_about_it(tiny_checkpoint, args, refused, fits):
    base = [
        "evaluate",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(tiny_checkpoint),
        "--n-samples",
        "8",
        "--no-checks",
        *args,
    ]
    result = run(*base)
    assert result.exit_code == 1 and result.output == f"Error: {refused}\n", result.output
    largest = run(*base, *fits)  # the largest budget that fits still runs, and covers the box: said so
    assert largest.exit_code == 0 and "covers the whole [0, 1] input box" in largest.output, largest.output


def test_other_libraries_warnings_stay_off_the_terminal_and_robustkits_own_reach_it(monkeypatch, capsys):
    """Issue 23: pkg_resources', torch.jit's and matplotlib's notes are hidden (shown with -v); ours are not."""
    import logging
    import warnings
    from pathlib import Path

    import robustkit
    from robustkit.cli.messages import route_messages

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # given back after the test
    ours = str(Path(robustkit.__file__).parent / "runner.py")
    for everything in (False, True):
        route_messages(logging.INFO, everything=everything)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn_explicit(
                "pkg_resources is deprecated as an API", UserWarning, "/venv/site-packages/robustbench/loaders.py", 4
            )
            warnings.warn_explicit(
                "`torch.jit.script` is deprecated", FutureWarning, "/venv/site-packages/torch/jit.py", 9
            )
            warnings.warn_explicit("a warning of robustkit's own", UserWarning, ours, 1)
        logging.getLogger("matplotlib.font_manager").info("generated new fontManager")
        logging.getLogger("robustkit.evaluation.runner").info("a note of robustkit's own")
        logging.getLogger("some.library").error("another library's error")
        err = capsys.readouterr().err
        assert (
            "a warning of robustkit's own" in err
            and "a note of robustkit's own" in err
            and "another library's error" in err
        )
        for theirs in ("pkg_resources", "torch.jit", "fontManager"):
            assert (theirs in err) == everything, (theirs, everything)
    logging.basicConfig(level=logging.WARNING, force=True)
