"""The spatial threat model and attack: rendering, the re-rendering check, the grid and random searches, CLI and suites."""

import itertools
import json

import pytest
import torch
from attack_fixtures import tiny_batch, tiny_model
from click.testing import CliRunner
from torch import nn

from attacks import SpatialAttack
from robustkit.cli import main
from robustkit.data.base import Split
from robustkit.errors import ConfigError
from robustkit.evaluation.engine import evaluate_attack
from robustkit.losses import attack_loss
from robustkit.registry import ATTACKS, THREATS
from robustkit.threats import default_eps, threat_model
from robustkit.threats.spatial import Spatial, render

SMALL = dict(eps=10, translation=1)  # the tiny 12×12 images: ±30° and ±3 px fool everything, ±10° ±1 px not


def per_image(value: float, n: int) -> torch.Tensor:
    return torch.full((n,), float(value))


# ---- rendering, against independent computations ----


@pytest.mark.parametrize("angle, turns", [(90, 1), (180, 2), (-90, -1), (270, 3)])
def test_a_quarter_turn_is_rot90_up_to_interpolation_at_grid_points(angle, turns):
    x = torch.rand(3, 2, 9, 9, generator=torch.Generator().manual_seed(0))
    zero = per_image(0, 3)
    out = render(x, per_image(angle, 3), zero, zero)
    assert (out - torch.rot90(x, turns, dims=(-2, -1))).abs().max() < 1e-5  # counter-clockwise, as displayed


def test_a_half_turn_of_a_non_square_image_flips_both_axes_and_no_turn_is_the_identity():
    x = torch.rand(2, 3, 6, 11, generator=torch.Generator().manual_seed(1))
    zero = per_image(0, 2)
    assert (render(x, per_image(180, 2), zero, zero) - x.flip(-1, -2)).abs().max() < 1e-5
    assert (render(x, zero, zero, zero) - x).abs().max() < 1e-6


@pytest.mark.parametrize("dx, dy", [(2, 0), (0, -3), (-1, 2)])
def test_an_integer_shift_is_a_roll_with_black_fill(dx, dy):
    x = torch.rand(2, 1, 8, 10, generator=torch.Generator().manual_seed(2))
    expected = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    h, w = x.shape[-2:]
    rows, cols = torch.arange(h), torch.arange(w)
    uncovered = ((rows - dy < 0) | (rows - dy >= h))[:, None] | ((cols - dx < 0) | (cols - dx >= w))[None, :]
    expected[..., uncovered] = 0.0  # what left the canvas is gone; what enters is black
    out = render(x, per_image(0, 2), per_image(dx, 2), per_image(dy, 2))
    assert (out - expected).abs().max() < 1e-5


@pytest.mark.parametrize("angle, dx, dy", [(20.0, 0, 0), (-35.0, 2, -1), (12.5, -3, 3)])
def test_the_reported_rotation_is_torchvisions_affine_angle_negated(angle, dx, dy):
    """Issue 23: a positive rotation turns counter-clockwise, as TF.rotate does; TF.affine's angle turns
    clockwise. On an asymmetric image only the negated angle matches."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    x = torch.zeros(1, 1, 28, 28)
    x[..., 4:10, 6:20], x[..., 10:24, 14:18] = 1.0, 0.5  # a "T" with its stem off-centre: no symmetry
    ours = render(x, per_image(angle, 1), per_image(dx, 1), per_image(dy, 1))

    def affine(a):
        return TF.affine(
            x, angle=a, translate=[dx, dy], scale=1.0, shear=[0.0], interpolation=InterpolationMode.BILINEAR
        )

    assert (ours - affine(-angle)).abs().max() < 1e-4
    assert (ours - affine(angle)).abs().max() > 0.5
    if dx == dy == 0:
        assert (ours - TF.rotate(x, angle, interpolation=InterpolationMode.BILINEAR)).abs().max() < 1e-4


def test_a_zoom_about_the_centre_doubles_distances_from_it():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 6] = 1.0  # two pixels right of the centre
    out = render(x, per_image(0, 1), per_image(0, 1), per_image(0, 1), per_image(2, 1))[0, 0, 4]
    assert torch.allclose(out[6:], torch.tensor([0.0, 0.5, 1.0]), atol=1e-5)  # column 8 shows column 6


# ---- the threat model ----


def test_the_threat_model_is_registered_described_and_labelled():
    threat = threat_model("spatial", 30, translation=3)
    assert isinstance(threat, Spatial) and "spatial" in THREATS.list() and default_eps("spatial", 3) == 30
    assert threat.describe() == {"norm": "spatial", "eps": 30.0, "translation": 3.0, "scale": 0.0}
    assert threat_model("spatial", 30, translation=3.0).describe() == threat.describe()  # 3 and 3.0 key alike
    assert threat.label() == "spatial ±30° ±3px"
    assert threat_model("spatial", 15, translation=2, scale=0.1).label() == "spatial ±15° ±2px ±10% zoom"
    assert Spatial.budget_axis == "max rotation (degrees)" and not Spatial.gradient_steps


def test_contains_accepts_the_attacks_outputs_and_rejects_anything_else():
    model, (x, y) = tiny_model(), tiny_batch(16)
    for attack in (SpatialAttack(**SMALL), SpatialAttack(**SMALL, search="random"), SpatialAttack(**SMALL, scale=0.1)):
        result = attack(model, x, y)
        threat, ev = attack.threat, result.evidence
        assert threat.contains(x, result.x_adv, ev).all(), attack
        assert torch.equal(result.norms, ev["rotation"].abs())
        noise = (torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) - 0.5) * 2e-3
        assert not threat.contains(x, (result.x_adv + noise).clamp(0, 1), ev).any()  # tampered pixels
        nudged = result.x_adv.clone()
        nudged[:, :, 5, 5] += 1e-3
        assert not threat.contains(x, nudged, ev).any()  # one pixel off by a quarter of a grey level
        wrong = {**ev, "rotation": ev["rotation"] + 3}
        assert not threat.contains(x, result.x_adv, wrong).any()  # parameters that did not make x_adv
        assert not threat.contains(x, result.x_adv, None).any() and threat.size(x, result.x_adv).isnan().all()
    # parameters out of bounds, even when x_adv is rendered with them
    n = len(x)
    for rotation, dx, dy in [(10.5, 0, 0), (-11, 0, 0), (0, 1.2, 0), (0, 0, -2), (float("nan"), 0, 0)]:
        ev = {"rotation": per_image(rotation, n), "dx": per_image(dx, n), "dy": per_image(dy, n)}
        x_adv = render(x, ev["rotation"], ev["dx"], ev["dy"])
        assert not threat_model("spatial", 10, translation=1).contains(x, x_adv, ev).any()
    edge = {"rotation": per_image(10, n), "dx": per_image(-1, n), "dy": per_image(1, n)}
    assert threat_model("spatial", 10, translation=1).contains(x, render(x, *edge.values()), edge).all()
    zoomed = {**edge, "scale": per_image(1.05, n)}
    x_zoom = render(x, *zoomed.values())
    assert not threat_model("spatial", 10, translation=1).contains(x, x_zoom, zoomed).any()  # no zoom allowed
    assert threat_model("spatial", 10, translation=1, scale=0.1).contains(x, x_zoom, zoomed).all()
    assert not threat_model("spatial", 10, translation=1, scale=0.1).contains(x, x_zoom, edge).any()  # scale missing


def test_the_engine_verifies_spatial_examples_with_their_evidence():
    model, (x, y) = tiny_model(), tiny_batch(64)
    result = evaluate_attack(model, Split(x, y), SpatialAttack(**SMALL), batch_size=16, progress=False)
    assert result.n_unverified == 0 and result.robust_accuracy < result.clean_accuracy
    broken = result.clean_correct & ~result.robust
    assert (result.norms[broken] <= 10).all() and result.norms[~broken].isnan().all()


# ---- the attack ----


def brute_force(model, x, y, target, attack):
    """The worst grid transform per image, one transform at a time: fooling first, then the highest loss."""
    best = [(False, float("-inf"), None)] * len(x)
    for rotation, dx, dy in itertools.product(
        *(
            torch.linspace(-b, b, c).tolist() if b else [0.0]
            for b, c in [
                (attack.eps, attack.rotations),
                (attack.translation, attack.translations),
                (attack.translation, attack.translations),
            ]
        )
    ):
        for i in range(len(x)):
            one = render(x[i : i + 1], per_image(rotation, 1), per_image(dx, 1), per_image(dy, 1))
            with torch.no_grad():
                logits = model(one)
            goal = None if target is None else target[i : i + 1]
            loss = attack_loss(logits, y[i : i + 1], goal, attack.loss).item()
            hit = bool(logits.argmax(1) == goal) if target is not None else bool(logits.argmax(1) != y[i])
            if (hit, loss) > best[i][:2]:
                best[i] = (hit, loss, (rotation, dx, dy))
    return best


@pytest.mark.parametrize("loss, targeted", [("margin", False), ("ce", False), ("margin", True)])
def test_the_grid_search_finds_what_a_brute_force_loop_over_the_same_grid_finds(loss, targeted):
    model, (x, y) = tiny_model(), tiny_batch(5)
    target = (y + 1) % 4 if targeted else None
    attack = SpatialAttack(**SMALL, rotations=5, translations=3, loss=loss, early_stop=False, max_batch=7)
    result = attack(model, x, y, target=target)
    expected = brute_force(model, x, y, target, attack)
    assert result.queries.tolist() == [45] * 5
    found = torch.stack([result.evidence[k] for k in ("rotation", "dx", "dy")], 1)
    assert torch.allclose(found, torch.tensor([e[2] for e in expected]))
    assert result.success.tolist() == [e[0] for e in expected]
    with torch.no_grad():
        worst = attack_loss(model(result.x_adv), y, target, loss)
    assert torch.allclose(worst, torch.tensor([e[1] for e in expected]), atol=1e-5)


def test_the_defaults_are_engstrom_et_als_grid_and_stop_per_sample():
    class Constant(nn.Module):  # never fooled: every grid point is tried
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([1.0, 0.0, 0.0, 0.0]))

        def forward(self, x):
            return self.bias.expand(len(x), 4)

    x, _ = tiny_batch(3)
    attack = SpatialAttack()
    assert (attack.eps, attack.translation, attack.rotations, attack.translations) == (30, 3, 31, 5)
    assert len(attack.grid()) == 775 and SpatialAttack(scale=0.1).grid().shape == (775 * 3, 4)
    assert SpatialAttack(translation=0).grid().shape == (31, 4)  # nothing to vary: no repeated transforms
    assert attack(Constant(), x, torch.zeros(3, dtype=torch.long)).queries.tolist() == [775] * 3
    model, (x, y) = tiny_model(), tiny_batch(32)
    stopped, full = SpatialAttack(**SMALL)(model, x, y), SpatialAttack(**SMALL, early_stop=False)(model, x, y)
    assert torch.equal(stopped.success, full.success)  # stopping early loses no sample
    assert (stopped.queries <= full.queries).all() and stopped.queries.sum() < full.queries.sum()
    assert (stopped.queries % 25 == 0).all()  # one angle (5 × 5 shifts) at a time


@pytest.mark.parametrize("settings", [dict(search="random", k=12, scale=0.1), dict(search="grid")])
def test_a_samples_result_does_not_depend_on_its_batch(settings):
    model, (x, y) = tiny_model(), tiny_batch(32)
    attack = SpatialAttack(**SMALL, seed=5, **settings)
    whole = attack(model, x, y)
    for lo in range(0, 32, 8):
        part = attack(model, x[lo : lo + 8], y[lo : lo + 8], index=torch.arange(lo, lo + 8))
        assert torch.equal(part.x_adv, whole.x_adv[lo : lo + 8])
        assert all(torch.equal(part.evidence[k], whole.evidence[k][lo : lo + 8]) for k in whole.evidence)
        assert torch.equal(part.queries, whole.queries[lo : lo + 8])
    chunked = SpatialAttack(**SMALL, seed=5, max_batch=5, **settings)(model, x, y)
    assert torch.equal(chunked.x_adv, whole.x_adv)
    other = SpatialAttack(**SMALL, seed=6, **settings)(model, x, y)
    assert torch.equal(other.x_adv, whole.x_adv) == (settings["search"] == "grid")  # only random search draws


def test_random_search_draws_inside_the_budget_and_leaves_model_and_inputs_alone():
    model, (x, y) = tiny_model(), tiny_batch(16)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x_before, y_before = x.clone(), y.clone()
    result = SpatialAttack(eps=20, translation=2, scale=0.2, search="random", k=10)(model, x, y)
    ev = result.evidence
    assert (ev["rotation"].abs() <= 20).all() and all((ev[k].abs() <= 2).all() for k in ("dx", "dy"))
    assert ((ev["scale"] - 1).abs() <= 0.2).all() and (result.queries == 10).all()
    assert torch.equal(x, x_before) and torch.equal(y, y_before)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_targeted_search_reaches_the_target():
    model, (x, y) = tiny_model(), tiny_batch(32)
    target = (y + 1) % 4
    result = SpatialAttack(**SMALL)(model, x, y, target=target)
    with torch.no_grad():
        assert torch.equal(result.success, model(result.x_adv).argmax(1) == target) and result.success.any()


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(eps=200), "a rotation budget beyond 180°"),
        (dict(translation=-1), "translation must be a number of pixels ≥ 0"),
        (dict(scale=1.5), "scale must be a relative zoom in \\[0, 1\\)"),
        (dict(search="bayes"), "search must be grid or random"),
        (dict(rotations=0), "rotations must be a whole number ≥ 1"),
        (dict(k=0), "k must be a whole number ≥ 1"),
        (dict(loss="hinge"), "unknown loss 'hinge'"),
        (dict(norm="linf"), "attacks spatial, not 'linf'"),
    ],
)
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(ConfigError, match=message) as err:
        ATTACKS.build("spatial", **settings)
    assert "\n" not in str(err.value)


def test_a_translation_as_large_as_the_image_is_refused_in_one_line():
    model, (x, y) = tiny_model(), tiny_batch(4)
    with pytest.raises(ConfigError, match=r"a translation of 12 px is not smaller than the 12×12 image") as err:
        SpatialAttack(translation=12)(model, x, y)
    assert "\n" not in str(err.value)


# ---- command line and suites ----


def test_robustkit_evaluate_runs_the_spatial_attack(tmp_path):
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--model",
            "lenet5",
            "--dataset",
            "synthetic",
            "--attack",
            "spatial",
            "--n-samples",
            "16",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "robust acc" in result.output and "spatial" in result.output
    record = json.loads(out.read_text())[0]
    assert record["norm"] == "spatial" and record["eps"] == 30 and record["n_unverified"] == 0
    assert 0 <= record["robust_accuracy"] <= record["clean_accuracy"]
    assert json.loads(record["settings"])["translation"] == 3
    small = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--model",
            "lenet5",
            "--dataset",
            "synthetic",
            "--attack",
            "spatial",
            "--eps",
            "10",
            "-o",
            "translation=1",
            "-o",
            "search=random",
            "--n-samples",
            "16",
        ],
    )
    assert small.exit_code == 0, small.output
    bad = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--model",
            "lenet5",
            "--dataset",
            "synthetic",
            "--attack",
            "spatial",
            "--eps",
            "270",
            "--n-samples",
            "16",
        ],
    )
    assert bad.exit_code == 1 and "a rotation budget beyond 180°" in bad.output and "Traceback" not in bad.output


def test_the_fashion_mnist_suite_has_a_spatial_column_with_a_stable_key(tmp_path):
    from pathlib import Path

    import yaml

    from robustkit.suites.spec import load_suite

    path = Path(__file__).parents[1] / "benchmarks/suites/fashion-mnist.yaml"
    suite = load_suite(path)
    cells = [c for c in suite.cells() if c.attack.norm == "spatial"]
    assert len(cells) == len(suite.models) and cells[0].eps == 10  # issue 23: ±30°, ±3 px fooled every model
    assert cells[0].threat.describe() == {"norm": "spatial", "eps": 10.0, "translation": 1.0, "scale": 0.0}
    assert cells[0].title == "smallcnn × spatial spatial ±10° ±1px"
    # the key of a cell stored under the earlier budget is what it was: stored cells are found, not re-run
    earlier = yaml.safe_load(path.read_text())
    earlier["attacks"] = [{"attack": "spatial", "norm": "spatial", "eps": [30], "settings": {"translation": 3}}]
    earlier.pop("headline")  # the suite's headline budget (L∞ 0.1) is not among this one's
    (tmp_path / "earlier.yaml").write_text(yaml.safe_dump(earlier))
    first = load_suite(tmp_path / "earlier.yaml").cells()[0]
    assert first.title == "smallcnn × spatial spatial ±30° ±3px"
    assert first.key("abc") == "543d05bf30d9a4bbbda52502"  # computed once: a changed key would re-run stored cells


def test_a_tiny_suite_with_a_spatial_column_runs_stores_and_ranks(tmp_path, monkeypatch):
    import numpy as np
    import yaml

    from robustkit.data import get_dataset
    from robustkit.evaluation.runner import run_suite
    from robustkit.results.leaderboard import leaderboard, publish
    from robustkit.results.store import read_stores, unpack
    from robustkit.suites.spec import load_suite
    from robustkit.weights.checkpoint import load_model

    suite = {
        "name": "tiny-spatial",
        "dataset": "synthetic",
        "n_samples": 32,
        "seed": 0,
        "batch_size": 16,
        "checks": False,
        "models": [{"model": "lenet5", "train": {"epochs": 4, "batch_size": 32, "lr": 0.05, "precision": "fp32"}}],
        "attacks": [
            {"attack": "spatial", "norm": "spatial", "eps": [5, 30], "settings": {"translation": 1}},
            {
                "attack": "spatial",
                "name": "worst-of-10",
                "eps": [30],
                "settings": {"translation": 1, "search": "random"},
            },
            {"attack": "fgsm", "norm": "linf", "eps": [0.1]},
        ],
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    monkeypatch.setenv("ROBUSTKIT_HOME", str(tmp_path / "home"))
    summary = run_suite(load_suite(path), tmp_path / "store.sqlite", device=torch.device("cpu"), progress=False)
    assert summary.evaluated == 4
    cells = read_stores([tmp_path / "store.sqlite"])
    board = leaderboard(cells).set_index("entry")
    assert {
        "worst spatial ε=5",
        "worst spatial ε=30",
        "spatial spatial ε=30",
        "worst-of-10 spatial ε=30",
        "worst linf ε=0.1",
    } <= set(board.columns)
    row = cells[(cells["attack"] == "spatial") & (cells["eps"] == 30)].iloc[0]
    assert row["n_unverified"] == 0
    model, _ = load_model(row["checkpoint"])
    subset = get_dataset("synthetic").test.subset(32, seed=0)
    direct = evaluate_attack(
        model, Split(subset.images, subset.labels), SpatialAttack(eps=30, translation=1), batch_size=16, progress=False
    )
    assert torch.equal(unpack(row["robust"], 32), direct.robust)
    both = cells[cells["eps"] == 30]
    bits = np.stack([np.unpackbits(np.frombuffer(b, dtype=np.uint8))[:32] for b in both["robust"]])
    assert board.loc["lenet5", "worst spatial ε=30"] == pytest.approx(bits.all(axis=0).mean())
    written = publish(cells, tmp_path / "board", "tiny-spatial")
    assert (
        any(p.suffix == ".html" for p in written) and "spatial" in (tmp_path / "board" / "tiny-spatial.md").read_text()
    )
