"""``robustkit certify`` end to end on Fashion-MNIST: a LeNet-5 noise-trained briefly, tiny n."""

from __future__ import annotations

import json

import pytest
from cli_fixtures import train_once
from click.testing import CliRunner
from scipy.stats import norm

from robustkit.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def noise_trained(tmp_path_factory):
    from robustkit.data import fashion_mnist

    if not fashion_mnist.DEBIAN_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist not installed")
    return train_once(
        tmp_path_factory,
        "aug",
        "--model",
        "lenet5",
        "--defense",
        "gaussian-aug",
        "-o",
        "sigma=0.5",
        "--epochs",
        "1",
        "--n-train",
        "2000",
        "--precision",
        "fp32",
    )


def test_certify_prints_the_curve_and_writes_per_image_radii(noise_trained, tmp_path):
    from robustkit.weights.checkpoint import load_model

    _, trained = load_model(noise_trained)
    assert trained.defense == "gaussian-aug" and trained.defense_settings["sigma"] == 0.5  # -o reached the defense
    out = tmp_path / "cert.json"
    args = [
        "certify",
        "--model",
        "lenet5",
        "--checkpoint",
        str(noise_trained),
        "--defense",
        "gaussian-aug",
        "-o",
        "sigma=0.5",
        "--n",
        "200",
        "--n0",
        "10",
        "--n-samples",
        "6",
        "--predict-n",
        "50",
        "--attack-steps",
        "2",
        "--attack-draws",
        "2",
        "--output",
        str(out),
        "--plot",
        str(tmp_path / "cert.png"),
    ]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "largest certifiable radius" in result.output and "forward-pass limit" in result.output
    (record,) = json.loads(out.read_text())
    # σ·Φ⁻¹(α^(1/n)) at σ 0.5, n 200, α 0.001 (0.913); the default radii stop below it
    assert record["max_radius"] == pytest.approx(0.5 * norm.ppf(0.001 ** (1 / 200)), rel=1e-9)
    assert [row["radius"] for row in record["certified"]] == [0.0, 0.25, 0.5, 0.75]
    samples = record["samples"]
    for row in record["certified"]:  # each figure recomputed from the per-image certificates
        count = sum(
            r is not None and p == y and r >= row["radius"]
            for r, p, y in zip(samples["radius"], samples["prediction"], samples["label"], strict=False)
        )
        assert row["accuracy"] == count / 6 and row["low"] <= row["accuracy"] <= row["high"]
    assert all(r is None or 0 < r <= record["max_radius"] + 1e-9 for r in samples["radius"])
    assert [p["radius"] for p in record["empirical"]] == [0.25, 0.5, 0.75]
    assert (tmp_path / "cert.png").stat().st_size > 0
    again = tmp_path / "again.json"
    assert run(*args[:-4], "--output", str(again), "--no-attack").exit_code == 0
    assert json.loads(again.read_text())[0]["samples"] == samples  # the seed fixes every draw


def test_certify_user_errors_are_one_line(tmp_path):
    result = run("certify", "--model", "lenet5", "--output", str(tmp_path / "x.csv"))
    assert result.exit_code != 0 and "Traceback" not in result.output and ".json" in result.output
    result = run("certify", "--model", "lenet5", "--radii", "0,a")
    assert result.exit_code != 0 and "--radii" in result.output


def test_a_suite_certifies_its_entry_into_the_store_and_the_board_shows_it(tmp_path):
    import yaml

    from robustkit.evaluation.runner import run_suite
    from robustkit.results.leaderboard import leaderboard, publish
    from robustkit.results.store import read_stores
    from robustkit.suites.spec import load_suite

    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        yaml.safe_dump(
            {
                "name": "smooth",
                "dataset": "synthetic",
                "n_samples": 16,
                "checks": False,
                "models": [
                    {
                        "model": "lenet5",
                        "train": {"epochs": 1, "batch_size": 32, "precision": "fp32"},
                        "certify": {
                            "sigma": 0.25,
                            "n": 60,
                            "n0": 10,
                            "n_samples": 8,
                            "radii": [0, 0.1],
                            "attack": True,
                        },
                    }
                ],
                "attacks": [{"attack": "fgsm", "norm": "l2", "eps": [0.1]}],
            }
        )
    )
    suite = load_suite(suite_file)
    store = tmp_path / "results.sqlite"
    first = run_suite(suite, store, device=torch_cpu(), progress=False)
    (row,) = read_stores([store], "certified").itertuples()
    assert row.key in first.keys and row.entry == "lenet5" and row.n == 8
    assert run_suite(suite, store, device=torch_cpu(), progress=False).evaluated == 0  # held: not certified again
    assert len(read_stores([store], "certified")) == 1
    cells, certified = read_stores([store]), read_stores([store], "certified")
    table = leaderboard(cells, certified=certified)
    points = {p["radius"]: p for p in json.loads(row.certified)}
    for radius in (0.0, 0.1):
        column = f"certified l2-smoothed ε={radius:.4g}"
        assert table.loc[0, column] == points[radius]["accuracy"]
        assert table.loc[0, f"{column}_low"] == pytest.approx(points[radius]["low"], abs=1e-6)
    assert "smoothadv l2-smoothed ε=0.1" in table and "fgsm l2 ε=0.1" in table  # the attack cell's column is as it was
    written = publish(cells, tmp_path / "board", "smooth", certified=certified)
    assert any(p.name == "smooth.certified.svg" for p in written)
    assert "Certified accuracy vs L2 radius" in (tmp_path / "board" / "smooth.html").read_text()


def torch_cpu():
    import torch

    return torch.device("cpu")


@pytest.mark.parametrize(
    "certify, message",
    [
        ({"sigma": -1}, "sigma"),
        ({"radii": [-0.5]}, "radii"),
        ({"speed": 3}, "unknown key"),
        ({"attack": "yes"}, "attack"),
    ],
)
def test_certify_settings_in_a_suite_are_checked_in_one_line(tmp_path, certify, message):
    from robustkit.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_suite_with(tmp_path, {"model": "lenet5", "certify": certify})


def test_certify_leaves_the_entrys_attack_cell_keys_as_they_were(tmp_path):
    plain = load_suite_with(tmp_path, {"model": "lenet5"})
    suite = load_suite_with(tmp_path, {"model": "lenet5", "certify": {"sigma": 0.5}})
    assert [c.key("f" * 64) for c in plain.cells()] == [c.key("f" * 64) for c in suite.cells()]
    entry = suite.models[0]
    other = load_suite_with(tmp_path, {"model": "lenet5", "certify": {"sigma": 0.25}}).models[0]
    assert entry.certify.key(suite, entry, "f" * 64) != other.certify.key(suite, other, "f" * 64)  # σ is in its own key


def load_suite_with(folder, entry):
    import yaml

    from robustkit.suites.spec import load_suite

    path = folder / "suite.yaml"
    path.write_text(
        yaml.safe_dump({"dataset": "synthetic", "models": [entry], "attacks": [{"attack": "fgsm", "eps": 0.1}]})
    )
    return load_suite(path)
