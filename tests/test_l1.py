"""The L1 threat model: the exact projection onto the L1 ball ∩ [0, 1], and the attacks that step in it."""

import math

import pytest
import torch

from robustkit.errors import ConfigError
from robustkit.per_sample_random import SampleRandom
from robustkit.threats import L1, default_eps, threat_model


def bisection_delta(v: torch.Tensor, room: torch.Tensor, eps: float) -> torch.Tensor:
    """Reference, one sample at a time in float64: δ_i = sign(v_i)·clip(|v_i| − λ, 0, room_i), with the
    multiplier λ ≥ 0 found by bisection on the monotone sum (λ = 0 when the caps alone keep it ≤ ε)."""
    out = []
    for vi, ri in zip(v.double().flatten(1), room.double().flatten(1), strict=True):

        def shrunk(lam, vi=vi, ri=ri):
            return torch.minimum((vi.abs() - lam).clamp_min(0), ri)

        lo, hi = 0.0, float(vi.abs().max())
        if shrunk(0.0).sum() > eps:
            for _ in range(200):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if shrunk(mid).sum() > eps else (lo, mid)
        else:
            hi = 0.0
        out.append(vi.sign() * shrunk(hi))
    return torch.stack(out).view(v.shape)


def bisection_projection(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> torch.Tensor:
    v = x_adv - x
    return x.double() + bisection_delta(v, torch.where(v > 0, 1 - x, x), eps)


def random_case(seed: int, n: int = 6, shape=(1, 5, 5), scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    x[:, :, 0, :2] = torch.tensor([0.0, 1.0])  # pixels on the box's faces
    return x, x + scale * torch.randn(n, *shape, generator=g)


@pytest.mark.parametrize("eps", [0.05, 1.0, 3.0, 12.0, 40.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clip_is_the_exact_projection_onto_the_ball_and_the_box(eps, seed):
    x, x_adv = random_case(seed)
    threat = L1(eps)
    got = threat.clip(x, x_adv)
    expected = bisection_projection(x, x_adv, eps)
    assert torch.allclose(got.double(), expected, atol=1e-5)
    assert got.min() >= 0 and got.max() <= 1
    assert (threat.norm(got - x) <= eps + threat.tolerance(x)).all()
    if eps == 40.0:  # beyond the box's reach: only the box clips
        assert torch.equal(got, x_adv.clamp(0, 1))


def test_clip_is_the_nearest_feasible_point_not_ball_then_box():
    """Ball-then-box wastes budget on coordinates the box cuts off; the exact projection is strictly closer."""
    x = torch.tensor([[0.9, 0.5, 0.5, 0.1]]).view(1, 1, 1, 4)
    x_adv = torch.tensor([[3.0, 0.8, 0.5, 0.1]]).view(
        1, 1, 1, 4
    )  # asks +2.1 and +0.3; the box allows +0.1 on the first
    threat = L1(0.3)
    exact = threat.clip(x, x_adv)
    assert torch.allclose(exact.flatten(), torch.tensor([1.0, 0.7, 0.5, 0.1]))  # 0.1 where the box stops, 0.2 elsewhere
    naive = (x + threat.project(x_adv - x)).clamp(0, 1)
    assert torch.allclose(threat.norm(naive - x), torch.tensor([0.1]))  # two thirds of the budget thrown away
    assert (exact - x_adv).norm() < (naive - x_adv).norm() - 0.01
    g = torch.Generator().manual_seed(0)  # and no feasible point drawn at random is closer
    for _ in range(200):
        other = threat.clip(x, x + torch.randn(x.shape, generator=g) * 0.3)
        assert (exact - x_adv).norm() <= (other - x_adv).norm() + 1e-6


@pytest.mark.parametrize("seed", [0, 1])
def test_clip_is_idempotent_and_leaves_feasible_points_alone(seed):
    x, x_adv = random_case(seed)
    threat = L1(2.0)
    once = threat.clip(x, x_adv)
    assert torch.allclose(threat.clip(x, once), once, atol=1e-6)
    inside = x + (once - x) * 0.5  # strictly inside the ball and the box: nothing to move
    assert torch.equal(threat.clip(x, inside), inside)


def test_project_is_the_plain_l1_ball():
    delta = 2 * torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    projected = L1(2.5).project(delta)
    expected = bisection_delta(delta, torch.full_like(delta, math.inf), 2.5)
    assert torch.allclose(projected.double(), expected, atol=1e-5)
    assert torch.allclose(L1(2.5).norm(projected), torch.full((5,), 2.5), atol=1e-5)
    assert torch.equal(L1(100.0).project(delta), delta)


def test_matches_the_official_autoattack_projection():
    """A peer check: the official APGD-L1's projection (autoattack) lands on the same points."""
    L1_projection = pytest.importorskip("pyautoattack.autopgd_base").L1_projection
    x, x_adv = random_case(5, n=8, shape=(1, 12, 12), scale=0.5)
    theirs = (x + (x_adv - x) + L1_projection(x, x_adv - x, 4.0)).clamp(0, 1)
    assert torch.allclose(L1(4.0).clip(x, x_adv), theirs, atol=1e-5)


def test_random_init_is_inside_the_ball_and_drawn_per_sample():
    x = torch.rand(6, 1, 8, 8)
    threat = L1(5.0)
    delta = threat.random_init(x, SampleRandom(0, torch.arange(6)))
    assert (threat.norm(delta) <= 5.0 + 1e-4).all() and (threat.norm(delta) > 4.5).all()  # near the sphere in 64-d
    alone = threat.random_init(x[3:4], SampleRandom(0, torch.tensor([3])))
    assert torch.equal(alone[0], delta[3])
    assert (threat.random_point(x, SampleRandom(0, torch.arange(6))) - x).abs().flatten(1).sum(1).le(5.0 + 1e-4).all()


def test_sparse_direction_moves_the_largest_share_with_unit_l1_norm():
    grad = torch.tensor([[0.1, -3.0, 2.0, 0.0, -0.5, 1.0, 0.2, 0.3, -0.05, 4.0]]).view(1, 1, 1, 10)
    direction = L1.sparse_direction(grad, torch.tensor([0.3]))
    expected = torch.zeros(10)
    expected[[1, 2, 9]] = torch.tensor([-1.0, 1.0, 1.0]) / 3
    assert torch.allclose(direction.flatten(), expected)
    assert torch.allclose(L1(1.0).normalize_grad(grad).abs().sum(), torch.tensor(1.0))


def test_budgets_names_and_the_whole_box():
    assert type(threat_model("L1", 10)) is L1 and default_eps("l1", 1) == 10 and default_eps("l1", 3) == 12
    assert L1(1.0).whole_box_budget((3, 32, 32))[0] == 3 * 32 * 32
    assert L1(1.0).widened((1, 28, 28)).eps == 784
    with pytest.raises(ConfigError, match="eps"):
        L1(-1.0)


def test_tolerance_covers_rounding_of_x_plus_delta_but_not_a_real_excess():
    x = torch.rand(4, 1, 28, 28)
    threat = L1(10.0)
    x_adv = threat.clip(x, x + torch.randn_like(x))
    assert threat.contains(x, x_adv).all()
    assert threat.tolerance(x) < 1e-3 * 10.0  # float32 on 784 pixels: far below any budget
    bigger = L1(10.0 * 1.01).clip(x, x + torch.randn_like(x))
    assert not threat.contains(x, bigger).any()
    assert math.isclose(L1(10.0).tolerance(x.half()), torch.finfo(torch.float16).eps * (0.5 * 784 + 10.0))


# ---- the attacks that step in the L1 ball ----


def test_apgd_l1_agrees_with_the_official_autoattack_implementation():
    """Robust accuracy within a few points of the official APGD-L1 (autoattack) on the same model and images,
    with and without the 3ε → 2ε → ε schedule; every example of ours verified inside the L1 ball and the box."""
    official = pytest.importorskip("pyautoattack.autopgd_base").APGDAttack
    from attack_fixtures import DATA, tiny_model

    from attacks import APGD

    model, x, y = tiny_model(), DATA.test.images, DATA.test.labels
    clean = model(x).argmax(1) == y
    for large in (False, True):
        ours = APGD(eps=4.0, norm="l1", steps=100, large_eps_first=large, seed=0)(model, x, y)
        assert L1(4.0).contains(x, ours.x_adv).all() and ours.x_adv.min() >= 0 and ours.x_adv.max() <= 1
        theirs = official(model, n_iter=100, norm="L1", eps=4.0, seed=0, use_largereps=large, device="cpu").perturb(
            x, y
        )
        inside = (theirs - x).abs().flatten(1).sum(1) <= 4.0 * (1 + 1e-5)
        ours_acc = (clean & ~ours.success).float().mean().item()
        theirs_acc = (clean & ~((model(theirs).argmax(1) != y) & inside)).float().mean().item()
        assert 0.1 < theirs_acc < 0.8  # a budget where the attack's strength shows
        assert abs(ours_acc - theirs_acc) <= 0.08, (large, ours_acc, theirs_acc)


def test_apgd_l1_is_reproducible_and_at_least_as_strong_as_pgd_l1():
    from attack_fixtures import DATA, tiny_model

    from attacks import APGD, PGD

    model, x, y = tiny_model(), DATA.test.images, DATA.test.labels
    first = APGD(eps=4.0, norm="l1", steps=30, seed=3)(model, x, y)
    again = APGD(eps=4.0, norm="l1", steps=30, seed=3)(model, x, y)
    assert torch.equal(first.x_adv, again.x_adv)
    pgd = PGD(eps=4.0, norm="l1", steps=30, seed=3)(model, x, y)
    assert PGD(eps=4.0, norm="l1", steps=30).threat.contains(x, pgd.x_adv).all()
    assert 0 < pgd.success.float().mean() <= first.success.float().mean() + 2 / len(x)


def test_l1_settings_that_cannot_be_honoured_are_refused():
    from robustkit.registry import ATTACKS

    with pytest.raises(ConfigError, match="large_eps_first schedule is for the l1 threat model, not linf"):
        ATTACKS.build("apgd", eps=0.1, large_eps_first=True)
    with pytest.raises(ConfigError, match="needs steps ≥ 3"):
        ATTACKS.build("apgd", eps=4.0, norm="l1", steps=2)
    assert ATTACKS.build("apgd", eps=4.0, norm="l1", steps=2, large_eps_first=False).steps == 2
    for name in ("fgsm", "deepfool"):
        with pytest.raises(
            ConfigError, match=r"attacks .*not 'l1' \(attacks for l1: apgd, autoattack, fab, pgd, square\)"
        ):
            ATTACKS.build(name, eps=4.0, norm="l1")


# ---- end to end through the CLI ----


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    """A tmp home with a tiny lenet5 trained on the synthetic data (1×16×16, d = 256)."""
    from click.testing import CliRunner

    from robustkit.cli import main

    folder = tmp_path_factory.mktemp("l1")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROBUSTKIT_HOME", str(folder / "home"))
        result = CliRunner().invoke(
            main,
            [
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
                str(folder / "tiny.safetensors"),
            ],
        )
    assert result.exit_code == 0, result.output
    return folder


def evaluate(home, *args):
    from click.testing import CliRunner

    from robustkit.cli import main

    base = [
        "evaluate",
        "--model",
        "lenet5",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(home / "tiny.safetensors"),
        "--n-samples",
        "16",
    ]
    return CliRunner().invoke(main, [*base, *args])


def test_apgd_l1_end_to_end_through_the_cli(tiny_home, tmp_path, monkeypatch):
    import json

    from attacks import APGD
    from robustkit.data import get_dataset
    from robustkit.evaluation.engine import evaluate_attack
    from robustkit.weights.checkpoint import load_model

    monkeypatch.setenv("ROBUSTKIT_HOME", str(tiny_home / "home"))
    out = tmp_path / "l1.json"
    result = evaluate(
        tiny_home, "--attack", "apgd", "--norm", "l1", "--eps", "6", "--steps", "20", "--output", str(out)
    )
    assert result.exit_code == 0, result.output
    assert "covers the whole" not in result.output
    record = (
        json.loads(out.read_text().strip().splitlines()[-1])
        if out.read_text().lstrip()[0] != "["
        else json.loads(out.read_text())[-1]
    )
    assert record["norm"] == "l1" and record["eps"] == 6.0
    # the same figure from the library, computed apart from the CLI
    model, _ = load_model(tiny_home / "tiny.safetensors")
    subset = get_dataset("synthetic").test.subset(16, seed=0)
    direct = evaluate_attack(model, subset, APGD(eps=6.0, norm="l1", steps=20), progress=False)
    assert record["robust_accuracy"] == pytest.approx(direct.robust.float().mean().item())
    assert record["robust_accuracy"] < record["clean_accuracy"]


def test_a_budget_reaching_the_whole_box_is_pointed_out_under_l1(tiny_home, monkeypatch):
    monkeypatch.setenv("ROBUSTKIT_HOME", str(tiny_home / "home"))
    warned = evaluate(tiny_home, "--attack", "pgd", "--norm", "l1", "--eps", "256", "--steps", "2")
    assert warned.exit_code == 0 and "l1 ε = 256 ≥ the box's L1 diameter d = 256 covers the whole" in warned.output
    assert (
        "covers the whole"
        not in evaluate(tiny_home, "--attack", "pgd", "--norm", "l1", "--eps", "255", "--steps", "2").output
    )


def test_an_attack_without_an_l1_step_is_refused_in_one_line_before_any_work(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from robustkit.cli import main

    monkeypatch.setenv("ROBUSTKIT_HOME", str(tmp_path / "home"))  # no checkpoint: any work would train one
    result = CliRunner().invoke(
        main, ["evaluate", "--model", "lenet5", "--dataset", "synthetic", "--attack", "fgsm", "--norm", "l1"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        result.output == "Error: FGSM attacks linf, l2, not 'l1' (attacks for l1: apgd, autoattack, fab, pgd, square)\n"
    )
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*.safetensors"))


def test_the_gradient_masking_checks_run_under_l1(tiny_home):
    from robustkit.data import get_dataset
    from robustkit.evaluation.checks import run_checks
    from robustkit.weights.checkpoint import load_model

    model, _ = load_model(tiny_home / "tiny.safetensors")
    report = run_checks(model, get_dataset("synthetic").test.subset(24, seed=0), norm="l1", eps=6.0)
    # a normally trained model shows no masking; PGD-10 under L1 may trail PGD-100 ×3 ("more-iterations-help"),
    # which is true there: fixed sparse steps converge slowly in the L1 ball (APGD-L1 adapts them)
    assert {f.check for f in report.flags} <= {"more-iterations-help"}, report.flags
    assert report.figures["pgd_accuracy_unbounded"] == 0.0  # ε = d reaches every image
    assert "broken_only_by_square" in report.figures  # the black-box comparison ran, with Square-L1
