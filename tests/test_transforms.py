"""Input-transform defenses and the attacker's answers: BPDA breaks rounding, EOT averages out noise."""

import io
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from attack_fixtures import DATA, tiny_batch, tiny_model
from click.testing import CliRunner
from PIL import Image

from attacks import PGD
from defenses import BitDepthReduction, GaussianNoise, JpegQuantization, Transformed
from defenses.transforms import _LUMA, BitDepth, Jpeg, dct_matrix, quantisation_table
from robustkit.bpda import is_straight_through, non_differentiable, straight_through
from robustkit.cli import main
from robustkit.data.base import Split
from robustkit.errors import ConfigError
from robustkit.evaluation.engine import evaluate_attack
from robustkit.modes import eval_mode
from robustkit.paths import checkpoint_path
from robustkit.predict import DRAWS, predict
from robustkit.registry import DEFENSES
from robustkit.weights import cache as pipeline
from robustkit.weights.checkpoint import load_model
from robustkit.weights.resolve import resolve_model


def input_grad(model, x, y):
    x = x.clone().requires_grad_(True)
    F.cross_entropy(model(x), y, reduction="sum").backward()
    return x.grad


def robust_accuracy(model, attack, x, y) -> float:
    return ((predict(model, x) == y) & ~attack(model, x, y).success).float().mean().item()


# ---- the transforms themselves ----


def test_bit_depth_is_plain_rounding_to_its_levels():
    x, _ = tiny_batch(8)
    for bits in (1, 3, 8):
        levels = 2**bits - 1
        assert torch.equal(BitDepth(bits)(x), torch.round(x * levels) / levels)
    assert len(BitDepth(2)(x).unique()) <= 4


def reference_block_jpeg(block: np.ndarray, table: np.ndarray) -> np.ndarray:
    """One 8×8 grey block through JPEG's DCT, written as ITU-T T.81 A.3.3's double sum, in float64."""
    u = np.arange(8)
    alpha = np.where(u == 0, 1 / math.sqrt(2), 1.0)
    cos = np.cos((2 * u[None, :] + 1) * u[:, None] * math.pi / 16)  # cos[u, x]
    s = block * 255 - 128
    coeffs = np.array([[alpha[a] * alpha[b] / 4 * np.sum(s * np.outer(cos[a], cos[b])) for b in u] for a in u])
    quantised = np.round(coeffs / table) * table
    back = np.array(
        [
            [np.sum(alpha[:, None] * alpha[None, :] / 4 * quantised * np.outer(cos[:, i], cos[:, j])) for j in u]
            for i in u
        ]
    )
    return np.clip((back + 128) / 255, 0, 1)


def test_jpeg_dct_matches_the_standards_formula_on_a_block():
    block = torch.rand(8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = dct_matrix()
    assert torch.allclose(d @ d.T, torch.eye(8, dtype=torch.float64), atol=1e-12)  # orthonormal
    for quality in (30, 75):
        table = quantisation_table(_LUMA, quality)
        ours = Jpeg(quality)(block[None, None])[0, 0]
        assert np.allclose(ours.numpy(), reference_block_jpeg(block.numpy(), table.numpy()), atol=1e-9)
    assert torch.equal(quantisation_table(_LUMA, 50), torch.tensor(_LUMA, dtype=torch.float64))


def test_jpeg_is_near_identity_at_quality_100_and_lossy_at_low_quality():
    x, _ = tiny_batch(16)  # 12×12: padded to 16×16 and cropped back
    assert (Jpeg(100)(x) - x).abs().max() < 2 / 255
    assert (Jpeg(10)(x) - x).abs().mean() > 5 * (Jpeg(100)(x) - x).abs().mean()
    colour = x.repeat(1, 3, 1, 1) * torch.tensor([1.0, 0.7, 0.4])[:, None, None]
    out = Jpeg(100)(colour)
    assert out.shape == colour.shape and (out - colour).abs().max() < 4 / 255
    assert (Jpeg(10)(colour) - colour).abs().mean() > 0.01 and out.min() >= 0 and out.max() <= 1


def test_jpeg_agrees_with_libjpeg_through_pillow():
    smooth = F.interpolate(
        torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(1)),
        size=(20, 20),
        mode="bilinear",
        align_corners=True,
    )
    smooth = (smooth * 255).round() / 255
    for quality in (30, 75):
        buffer = io.BytesIO()
        Image.fromarray((smooth[0, 0].numpy() * 255).round().astype(np.uint8), "L").save(
            buffer, "JPEG", quality=quality
        )
        decoded = torch.tensor(np.array(Image.open(buffer)), dtype=torch.float32) / 255
        ours = Jpeg(quality)(smooth)[0, 0]
        # libjpeg's integer DCT and 8-bit output round differently; the lossy step is the same
        assert (ours - decoded).abs().max() < 6 / 255 < (smooth[0, 0] - decoded).abs().max()


def test_gaussian_noise_is_random_per_pass_reproducible_per_seed_and_leaves_the_global_rng_alone():
    x, _ = tiny_batch(4)
    noisy, twin = GaussianNoise(sigma=0.1).wrap(tiny_model()), GaussianNoise(sigma=0.1).wrap(tiny_model())
    rng = torch.get_rng_state()
    with torch.no_grad():
        first, second, again = noisy(x), noisy(x), twin(x)
    assert not torch.equal(first, second) and torch.equal(first, again)
    assert torch.equal(torch.get_rng_state(), rng)
    out = noisy.transform(x)
    assert out.min() >= 0 and out.max() <= 1


def test_gaussian_noise_verdicts_are_majority_votes_so_every_claimed_example_verifies():
    # measured with single-draw verdicts (fresh noise each): 6 claimed examples failed verification
    x, y = DATA.test.images, DATA.test.labels
    noisy = GaussianNoise(sigma=0.2).wrap(tiny_model())
    result = evaluate_attack(noisy, Split(x, y), PGD(eps=0.1, steps=10), batch_size=64, progress=False)
    assert result.n_unverified == 0 and result.robust_accuracy < result.clean_accuracy
    noisy.transform.reseed()  # the vote by hand: draws 1…9 of the seeded stream, right in at least 5
    with torch.no_grad():
        right = sum((noisy(x).argmax(1) == y).long() for _ in range(DRAWS))
    assert torch.equal(result.clean_correct, right * 2 > DRAWS)


# ---- the defenses: registry, wrapping, gradients ----


def test_transform_defenses_build_without_a_budget_and_validate_settings():
    assert isinstance(DEFENSES.build("bit-depth"), BitDepthReduction)
    assert DEFENSES.build("jpeg", eps=0.1, norm="l2").quality == 75  # the commands pass their ε: ignored
    for name in ("bit-depth", "jpeg", "gaussian-noise"):
        defense = DEFENSES.build(name)
        assert not defense.trains_weights and defense.eps == 0.0
    for bad in ({"bits": 0}, {"bits": 2.5}):
        with pytest.raises(ConfigError, match="bits"):
            BitDepthReduction(**bad)
    with pytest.raises(ConfigError, match="quality"):
        JpegQuantization(quality=101)
    with pytest.raises(ConfigError, match="sigma"):
        GaussianNoise(sigma=-0.1)


@pytest.mark.parametrize("name", [n for n in DEFENSES if not DEFENSES.get(n).trains_weights])
def test_wrapping_gives_the_wrapper_the_models_mode(name, caplog):
    model = tiny_model()
    wrapped = DEFENSES.build(name).wrap(model)
    assert not any(m.training for m in wrapped.modules())
    x, y = tiny_batch(8)
    evaluate_attack(wrapped, Split(x, y), PGD(eps=0.05, steps=1), progress=False)
    assert "training mode" not in caplog.text
    model.train().normalize.eval()  # a model training with one module kept in eval mode keeps it so
    modes = [m.training for m in model.modules()]
    wrapped = DEFENSES.build(name).wrap(model)
    own = getattr(wrapped, "transform", wrapped)  # an input transform's own layer; an output wrapper is its own
    assert wrapped.training and own.training and [m.training for m in model.modules()] == modes


def test_wrapping_keeps_the_model_its_keys_and_modes():
    model = tiny_model()
    wrapped = BitDepthReduction(bits=3).wrap(model)
    assert isinstance(wrapped, Transformed) and wrapped.model is model
    assert next(wrapped.parameters()) is next(model.parameters())
    assert set(wrapped.state_dict()) == {f"model.{k}" for k in model.state_dict()}  # the transform holds nothing
    wrapped.train()
    assert all(m.training for m in wrapped.modules())
    wrapped.eval()
    assert not any(m.training for m in wrapped.modules())
    model.train()
    with eval_mode(wrapped):
        assert not any(m.training for m in wrapped.modules())
    assert model.training and all(m.training for m in model.modules())


@pytest.mark.parametrize(
    "defense", [BitDepthReduction(bits=3), JpegQuantization(quality=50)], ids=["bit-depth", "jpeg"]
)
def test_rounding_masks_the_input_gradient_and_bpda_restores_it(defense):
    x, y = tiny_batch(8)
    wrapped = defense.wrap(tiny_model())
    assert torch.equal(input_grad(wrapped, x, y), torch.zeros_like(x))  # exactly zero: gradient masking
    with straight_through(True):
        assert is_straight_through()
        through = input_grad(wrapped, x, y)
        with straight_through(False):
            assert not is_straight_through()
    assert not is_straight_through() and through.abs().sum() > 0
    with torch.no_grad(), straight_through(True):  # the forward pass is the transform's either way
        assert torch.allclose(wrapped(x), tiny_model()(defense.transform()(x)), atol=1e-5)


def test_bpda_on_bit_depth_is_the_models_gradient_at_the_squeezed_input():
    x, y = tiny_batch(8)
    model = tiny_model()
    with straight_through(True):
        through = input_grad(BitDepthReduction(bits=3).wrap(model), x, y)
    assert torch.allclose(through, input_grad(model, BitDepth(3)(x), y), atol=1e-6)
    t = torch.tensor([0.2, 0.7], requires_grad=True)
    with straight_through(True):
        non_differentiable(t, torch.round).sum().backward()
    assert t.grad.tolist() == [1.0, 1.0]


def test_pgd_is_fooled_by_bit_depth_until_it_uses_bpda():
    # measured: clean 0.98; PGD 0.98 without BPDA (the gradient is zero), 0.05 with it
    x, y = DATA.test.images, DATA.test.labels
    wrapped = BitDepthReduction(bits=3).wrap(tiny_model())
    masked = robust_accuracy(wrapped, PGD(eps=0.15, steps=10), x, y)
    honest = robust_accuracy(wrapped, PGD(eps=0.15, steps=10, bpda=True), x, y)
    assert masked > 0.9 and honest < 0.3


def test_eot_estimates_the_expected_gradient_of_a_noisy_model_better():
    x, y = tiny_batch(16)
    noisy = GaussianNoise(sigma=0.2).wrap(tiny_model())
    copies = 256  # the expected gradient from many noise draws, as one batch of copies
    _, many, _ = PGD(eps=0.1).loss_and_grad(noisy, x.repeat(copies, 1, 1, 1), y.repeat(copies), None)
    expected = many.view(copies, *x.shape).mean(0)

    def cosine(eot: int) -> float:
        _, grad, _ = PGD(eps=0.1, eot=eot).loss_and_grad(noisy, x, y, None)
        return F.cosine_similarity(grad.flatten(1), expected.flatten(1)).mean().item()

    one, eight = cosine(1), cosine(8)  # measured about 0.69 and 0.92
    assert eight > one + 0.1 and eight > 0.8


def test_eot_and_bpda_settings_are_validated_and_default_to_the_plain_attack():
    model, (x, y) = tiny_model(), tiny_batch(8)
    for bad in ({"eot": 0}, {"eot": -2}, {"eot": 1.5}, {"eot": True}):
        with pytest.raises(ConfigError, match="eot"):
            PGD(eps=0.1, **bad)
    with pytest.raises(ConfigError, match="bpda"):
        PGD(eps=0.1, bpda="yes")
    plain = PGD(eps=0.1, steps=3)
    assert plain.settings()["eot"] == 1 and plain.settings()["bpda"] is False
    # on a deterministic, differentiable model neither setting changes the result
    for variant in (PGD(eps=0.1, steps=3, eot=2), PGD(eps=0.1, steps=3, bpda=True)):
        assert torch.equal(variant(model, x, y).x_adv, plain(model, x, y).x_adv)


# ---- the pipeline: transforms share the undefended checkpoint ----


def test_transform_defenses_reuse_the_undefended_checkpoint(isolated_home, monkeypatch):
    defense = BitDepthReduction(bits=2, eps=0.1)
    bare = pipeline.cache_path(DATA, "lenet5", None)
    assert pipeline.cache_path(DATA, "lenet5", defense) == bare
    model, record, _, path = pipeline.train_and_save(
        "lenet5",
        DATA,
        device=torch.device("cpu"),
        defense=defense,
        n_train=64,
        epochs=1,
        batch_size=32,
        precision="fp32",
    )
    assert path.parent == bare.parent and path.name.startswith("lenet5-none-recipe")  # settings beyond the default
    assert record.defense == "none" and not isinstance(model, Transformed)
    loaded, _ = load_model(path)  # the bare model's state dict, readable as ever

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr("robustkit.weights.resolve.train_and_save", no_training)
    resolved = resolve_model("lenet5", DATA, defense=defense)
    wrapped, record, found = resolved.model, resolved.record, resolved.provenance.path
    assert found == path and isinstance(wrapped, Transformed) and isinstance(wrapped.transform, BitDepth)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in wrapped.model.state_dict().items())
    given = resolve_model("lenet5", DATA, checkpoint=path, defense=defense).model
    assert isinstance(given, Transformed)
    plain = resolve_model("lenet5", DATA).model
    assert not isinstance(plain, Transformed)


def test_suite_entries_with_a_transform_point_at_the_undefended_checkpoint():
    from robustkit.evaluation.runner import _checkpoint_for
    from robustkit.suites.spec import ModelEntry

    path = _checkpoint_for(ModelEntry(model="lenet5", defense="jpeg", defense_settings={"quality": 50}), DATA)
    assert path == checkpoint_path(DATA.info.name, "lenet5")
    assert _checkpoint_for(ModelEntry(model="lenet5", defense="madry"), DATA) != path


def test_cli_evaluates_the_standard_model_through_the_transform(isolated_home, tmp_path):
    runner = CliRunner()
    common = ["--model", "lenet5", "--dataset", "synthetic"]
    train = runner.invoke(main, ["train", *common, "--epochs", "1", "--n-train", "128", "--precision", "fp32"])
    assert train.exit_code == 0, train.output
    record = tmp_path / "records.json"
    evaluate = runner.invoke(
        main,
        [
            "evaluate",
            *common,
            "--defense",
            "bit-depth",
            "--eps",
            "0.1",
            "--steps",
            "2",
            "--n-samples",
            "16",
            "--output",
            str(record),
        ],
    )
    assert evaluate.exit_code == 0, evaluate.output
    assert "training one" not in evaluate.output and "training mode" not in evaluate.output
    assert str(isolated_home / "checkpoints" / "synthetic" / "lenet5-none-recipe") in record.read_text()
    noisy = runner.invoke(
        main,
        [
            "evaluate",
            *common,
            "--defense",
            "gaussian-noise",
            "--eps",
            "0.1",
            "--steps",
            "2",
            "--n-samples",
            "16",
            "--output",
            str(record),
        ],
    )
    assert noisy.exit_code == 0, noisy.output
    squeezed, noise = json.loads(record.read_text())
    squeezed, noise = json.loads(squeezed["extra"]), {**noise, **json.loads(noise["extra"])}
    assert squeezed["verify_draws"] == 1 and noise["verify_draws"] == DRAWS and noise["n_unverified"] == 0
