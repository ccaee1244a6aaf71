"""The flow threat model and stAdv: the warp, L_flow by hand, the re-warping check, projection, the attack and its CLI."""

import json

import pytest
import torch
from attack_fixtures import tiny_batch, tiny_model
from click.testing import CliRunner

from attacks import StAdv
from robustkit.cli import main
from robustkit.data.base import Split
from robustkit.errors import ConfigError
from robustkit.evaluation.engine import evaluate_attack
from robustkit.registry import ATTACKS, THREATS
from robustkit.threats import default_eps, threat_family, threat_model
from robustkit.threats.flow import Flow, flow_loss, warp

# ---- the warp, against independent computations ----


def test_zero_flow_is_the_identity():
    x = torch.rand(3, 2, 9, 11, generator=torch.Generator().manual_seed(0))
    assert (warp(x, torch.zeros(3, 2, 9, 11)) - x).abs().max() < 1e-6


@pytest.mark.parametrize("u, v", [(1, 0), (0, -2), (-1, 3)])
def test_an_integer_constant_flow_is_a_pixel_shift(u, v):
    x = torch.rand(2, 1, 8, 10, generator=torch.Generator().manual_seed(1))
    flow = torch.zeros(2, 2, 8, 10)
    flow[:, 0], flow[:, 1] = u, v
    out = warp(x, flow)
    expected = torch.roll(x, shifts=(-v, -u), dims=(-2, -1))  # pixel (i, j) shows (i + v, j + u)
    rows = slice(max(0, -v), 8 - max(0, v))  # the interior: where the sampled pixel exists
    cols = slice(max(0, -u), 10 - max(0, u))
    assert (out[..., rows, cols] - expected[..., rows, cols]).abs().max() < 1e-5
    outside = torch.ones(8, 10, dtype=torch.bool)
    outside[rows, cols] = False
    assert out[..., outside].abs().max() < 1e-6  # sampled from beyond the image: black


def test_a_half_pixel_flow_averages_neighbours():
    x = torch.tensor([[[[0.0, 1.0, 0.5]]]])
    flow = torch.zeros(1, 2, 1, 3)
    flow[:, 0] = 0.5
    assert torch.allclose(warp(x, flow)[0, 0, 0, :2], torch.tensor([0.5, 0.75]), atol=1e-6)


# ---- L_flow and projection ----


def test_l_flow_of_a_hand_made_field():
    flow = torch.zeros(1, 2, 2, 3)
    flow[0, 0] = torch.tensor([[0.0, 3.0, 3.0], [0.0, 0.0, 0.0]])  # u
    flow[0, 1] = torch.tensor([[0.0, 4.0, 0.0], [0.0, 0.0, 0.0]])  # v
    # adjacent pairs (each counted twice, once from each side):
    # row 0: (0,0)-(0,1): √(9+16)=5; (0,1)-(0,2): √(0+16)=4; row 1: 0, 0
    # columns: (0,0)-(1,0): 0; (0,1)-(1,1): √(9+16)=5; (0,2)-(1,2): √9=3
    assert flow_loss(flow).tolist() == [2 * (5 + 4 + 5 + 3)]
    assert flow_loss(torch.zeros(2, 2, 5, 5)).tolist() == [0.0, 0.0]
    assert flow_loss(torch.ones(1, 2, 5, 5) * 3).tolist() == [0.0]  # a shift costs nothing: hence max_displacement
    assert torch.allclose(flow_loss(torch.zeros(1, 2, 2, 3), tiny=1e-4), torch.tensor([2 * 7 * 1e-2]))  # 7 pairs


def test_projection_scales_onto_the_budget_and_clamps_displacements():
    threat = threat_model("flow", 10, max_displacement=1.5)
    flow = torch.randn(4, 2, 6, 6, generator=torch.Generator().manual_seed(2)) * 0.5
    flow[0] *= 0.01  # inside the budget: unchanged
    projected = threat.project(flow)
    assert torch.equal(projected[0], flow[0])
    loss = flow_loss(flow[1:].clamp(-1.5, 1.5))
    assert (loss > 10).all()
    assert torch.allclose(projected[1:], flow[1:].clamp(-1.5, 1.5) * (10 / loss).view(-1, 1, 1, 1))
    assert torch.allclose(flow_loss(projected[1:]), torch.full((3,), 10.0), rtol=1e-6)
    assert torch.allclose(flow_loss(3 * flow), 3 * flow_loss(flow), rtol=1e-6)  # homogeneous of degree 1
    assert projected.abs().max() <= 1.5
    assert torch.equal(threat_model("flow", 0).project(flow), torch.zeros_like(flow))


# ---- the threat model ----


def test_the_threat_model_is_registered_described_and_grouped_with_spatial():
    threat = threat_model("flow", 100)
    assert isinstance(threat, Flow) and "flow" in THREATS.list() and default_eps("flow", 1) == 100
    assert threat.describe() == {"norm": "flow", "eps": 100.0, "max_displacement": 1.0}
    assert threat_model("flow", 100, max_displacement=1).describe() == threat.describe()
    assert threat.label() == "flow L_flow≤100 ±1px" and threat_family("flow") == "spatial"
    with pytest.raises(ConfigError, match="max_displacement must be a number of pixels > 0") as err:
        threat_model("flow", 100, max_displacement=-1)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="eps must be a finite number ≥ 0"):
        threat_model("flow", -5)


def test_contains_accepts_a_genuine_warp_and_rejects_hand_made_violations():
    x, _ = tiny_batch(4)
    threat = threat_model("flow", 20, max_displacement=1)
    flow = threat.project(torch.randn(4, 2, 12, 12, generator=torch.Generator().manual_seed(3)) * 0.3)
    x_adv = warp(x, flow)
    assert threat.contains(x, x_adv, {"flow": flow}).all()
    assert torch.allclose(threat.size(x, x_adv, {"flow": flow}), flow_loss(flow))
    tampered = x_adv.clone()
    tampered[:, :, 6, 6] += 1e-3  # a quarter of a grey level: not the reported warp
    assert not threat.contains(x, tampered, {"flow": flow}).any()
    other = flow.clone()
    other[:, 0] += 0.25  # a flow that did not make x_adv (a constant: same L_flow, same bound)
    assert not threat.contains(x, x_adv, {"flow": other}).any()
    over = flow * 1.01  # over the smoothness budget, though x_adv is its warp
    assert not threat.contains(x, warp(x, over), {"flow": over}).any()
    far = torch.zeros_like(flow)
    far[:, 1] = 1.2  # a shift: L_flow 0, but beyond max_displacement
    assert not threat.contains(x, warp(x, far), {"flow": far}).any()
    assert not threat.contains(x, x_adv, None).any() and threat.size(x, x_adv).isnan().all()  # flow missing
    assert not threat.contains(x, x_adv, {"flow": flow[:, :, :6]}).any()  # a flow of the wrong shape
    nan = flow.clone()
    nan[0, 0, 0, 0] = float("nan")
    assert threat.contains(x, warp(x, nan), {"flow": nan}).tolist() == [False, True, True, True]


# ---- the attack ----


def test_stadv_reduces_accuracy_and_every_example_verifies():
    model, (x, y) = tiny_model(), tiny_batch(64)
    attack = StAdv(eps=50, max_displacement=1)  # the tiny 12×12 model: 0.98 clean, ~0.56 left
    result = evaluate_attack(model, Split(x, y), attack, batch_size=16, progress=False)
    assert result.n_unverified == 0 and result.robust_accuracy < result.clean_accuracy - 0.2
    broken = result.clean_correct & ~result.robust
    assert (result.norms[broken] <= 50 * (1 + 1e-5)).all()
    direct = attack(model, x, y)
    assert attack.threat.contains(x, direct.x_adv, direct.evidence).all()
    assert direct.evidence["flow"].shape == (64, 2, 12, 12) and direct.evidence["flow"].abs().max() <= 1
    assert ((direct.queries >= 1) & (direct.queries <= 51)).all()
    assert (direct.queries[~direct.success] == 51).all()  # the unfooled run every step and the final score


def test_early_stop_keeps_every_success_and_spends_fewer_passes():
    model, (x, y) = tiny_model(), tiny_batch(32)
    stopped, full = StAdv(eps=20, steps=20)(model, x, y), StAdv(eps=20, steps=20, early_stop=False)(model, x, y)
    assert (stopped.success | ~full.success).all() and stopped.queries.sum() < full.queries.sum()
    assert (full.queries == 21).all()


def test_targeted_stadv_reaches_the_target():
    model, (x, y) = tiny_model(), tiny_batch(32)
    target = (y + 1) % 4
    result = StAdv(eps=50, max_displacement=2)(model, x, y, target=target)
    with torch.no_grad():
        assert (
            torch.equal(result.success, model(result.x_adv).argmax(1) == target) and result.success.float().mean() > 0.3
        )


def test_a_samples_result_does_not_depend_on_its_batch():
    model, (x, y) = tiny_model(), tiny_batch(16)
    attack = StAdv(eps=20, steps=10)
    whole = attack(model, x, y)
    part = attack(model, x[4:12], y[4:12], index=torch.arange(4, 12))
    assert torch.allclose(part.evidence["flow"], whole.evidence["flow"][4:12], atol=1e-6)
    assert torch.equal(part.success, whole.success[4:12]) and torch.equal(part.queries, whole.queries[4:12])


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(eps=-1), "eps must be a finite number ≥ 0"),
        (dict(max_displacement=0), "max_displacement must be a number of pixels > 0"),
        (dict(steps=0), "steps must be a whole number ≥ 1"),
        (dict(step_size=0), "step_size > 0"),
        (dict(tau=-1), "tau ≥ 0"),
        (dict(loss="hinge"), "unknown loss 'hinge'"),
        (dict(norm="linf"), "attacks flow, not 'linf'"),
    ],
)
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(ConfigError, match=message) as err:
        ATTACKS.build("stadv", **settings)
    assert "\n" not in str(err.value)


def test_a_displacement_as_large_as_the_image_is_refused_in_one_line():
    model, (x, y) = tiny_model(), tiny_batch(4)
    with pytest.raises(ConfigError, match=r"max_displacement of 12 px is not smaller than the 12×12 image") as err:
        StAdv(max_displacement=12)(model, x, y)
    assert "\n" not in str(err.value)


# ---- command line ----


def test_robustkit_evaluate_runs_stadv(tmp_path):
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
            "stadv",
            "--n-samples",
            "16",
            "--steps",
            "5",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "robust acc" in result.output and "flow" in result.output
    record = json.loads(out.read_text())[0]
    assert record["norm"] == "flow" and record["eps"] == 100 and record["n_unverified"] == 0
    assert 0 <= record["robust_accuracy"] <= record["clean_accuracy"]
    assert json.loads(record["settings"])["max_displacement"] == 1
    bad = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--model",
            "lenet5",
            "--dataset",
            "synthetic",
            "--attack",
            "stadv",
            "--eps",
            "-3",
            "--n-samples",
            "16",
        ],
    )
    assert bad.exit_code != 0 and "Traceback" not in bad.output
