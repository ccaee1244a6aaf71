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
    return train_once(tmp_path_factory, "aug", "--model", "lenet5", "--defense", "gaussian-aug", "-o", "sigma=0.5",
                      "--epochs", "1", "--n-train", "2000", "--precision", "fp32")  # fmt: skip


def test_certify_prints_the_curve_and_writes_per_image_radii(noise_trained, tmp_path):
    from robustkit.weights.checkpoint import load_model

    _, trained = load_model(noise_trained)
    assert trained.defense == "gaussian-aug" and trained.defense_settings["sigma"] == 0.5  # -o reached the defense
    out = tmp_path / "cert.json"
    args = ["certify", "--model", "lenet5", "--checkpoint", str(noise_trained), "--defense", "gaussian-aug", "-o", "sigma=0.5",
            "--n", "200", "--n0", "10", "--n-samples", "6", "--predict-n", "50", "--attack-steps", "2", "--attack-draws", "2",
            "--output", str(out), "--plot", str(tmp_path / "cert.png")]  # fmt: skip
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "largest certifiable radius" in result.output and "forward-pass limit" in result.output
    (record,) = json.loads(out.read_text())
    # σ·Φ⁻¹(α^(1/n)) at σ 0.5, n 200, α 0.001 (0.913); the default radii stop below it
    assert record["max_radius"] == pytest.approx(0.5 * norm.ppf(0.001 ** (1 / 200)), rel=1e-9)
    assert [row["radius"] for row in record["certified"]] == [0.0, 0.25, 0.5, 0.75]
    samples = record["samples"]
    for row in record["certified"]:  # each figure recomputed from the per-image certificates
        count = sum(r is not None and p == y and r >= row["radius"]
                    for r, p, y in zip(samples["radius"], samples["prediction"], samples["label"]))  # fmt: skip
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
