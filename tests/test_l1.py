"""The L1 threat model: the exact projection onto the L1 ball ∩ [0, 1], and the attacks that step in it."""

import math

import pytest
import torch

from robustkit.errors import ConfigError
from robustkit.sample_random import SampleRandom
from robustkit.threat import L1, default_eps, threat_model


def bisection_delta(v: torch.Tensor, room: torch.Tensor, eps: float) -> torch.Tensor:
    """Reference, one sample at a time in float64: δ_i = sign(v_i)·clip(|v_i| − λ, 0, room_i), with the
    multiplier λ ≥ 0 found by bisection on the monotone sum (λ = 0 when the caps alone keep it ≤ ε)."""
    out = []
    for vi, ri in zip(v.double().flatten(1), room.double().flatten(1)):

        def shrunk(lam):
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
    x_adv = torch.tensor([[3.0, 0.8, 0.5, 0.1]]).view(1, 1, 1, 4)  # asks +2.1 and +0.3; the box allows +0.1 on the first
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
