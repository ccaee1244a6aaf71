"""DeepFool against closed forms, and universal perturbations: budget, strength, transfer, determinism, files."""

import pytest
import torch
from attack_fixtures import DATA, tiny_model
from torch import nn

from attacks import DeepFool, Universal
from attacks.universal import fooling_rate
from robustkit.errors import CheckpointError, ConfigError
from robustkit.results.perturbation_file import load_perturbation, save_perturbation

FIT, HELD_OUT = DATA.train.images, DATA.test.images


def linear_model(dims: int = 64, classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(dims, classes))
    nn.init.normal_(model[1].weight, std=0.1)
    return model.eval()


@pytest.mark.parametrize("norm, dual", [("l2", 2.0), ("linf", 1.0)])
def test_deepfool_finds_the_exact_distance_to_a_linear_decision_boundary(norm, dual):
    """For a linear classifier the region of class y is a polytope: the distance to its complement in a
    norm is min_k (z_y − z_k) / ‖w_y − w_k‖_dual, which DeepFool must reach in one step."""
    model = linear_model()
    x = 0.35 + 0.3 * torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = model(x)
    y = z.argmax(1)
    w = model[1].weight
    closed_form = torch.stack(
        [min((z[i, y[i]] - z[i, k]) / (w[y[i]] - w[k]).norm(p=dual) for k in range(5) if k != y[i]) for i in range(16)]
    )
    result = DeepFool(eps=10.0, norm=norm, overshoot=0.0)(model, x, y)
    assert result.success.all()
    assert torch.allclose(result.extras["minimal_norm"], closed_form.detach(), rtol=1e-3, atol=1e-4)
    assert result.queries.tolist() == [2] * 16  # one linearisation, one check


def test_deepfool_batch_equals_one_image_at_a_time():
    model, x, y = tiny_model(), HELD_OUT[:12], DATA.test.labels[:12]
    batch = DeepFool(eps=2.0, norm="l2")(model, x, y)
    for i in range(12):
        alone = DeepFool(eps=2.0, norm="l2")(model, x[i : i + 1], y[i : i + 1])
        assert torch.allclose(alone.x_adv[0], batch.x_adv[i], atol=1e-5)


@pytest.mark.parametrize("method", ["deepfool", "sgd"])
@pytest.mark.parametrize("norm, eps", [("linf", 0.25), ("l2", 3.0)])
def test_universal_perturbation_stays_in_budget_and_beats_noise_on_unseen_images(method, norm, eps):
    model = tiny_model()
    attack = Universal(eps=eps, norm=norm, method=method, fooling_goal=0.9, max_passes=10)
    delta = attack.fit(model, FIT, progress=False)
    assert delta.shape == FIT.shape[1:] and delta.dtype == torch.float32
    assert attack.threat.norm(delta[None]).item() <= eps * (1 + 1e-6)
    noise = attack.threat.project(torch.randn((1, *delta.shape), generator=torch.Generator().manual_seed(0)) * 10)[0]
    fit_rate, held_out, by_noise = (
        fooling_rate(model, FIT, delta),
        fooling_rate(model, HELD_OUT, delta),
        fooling_rate(model, HELD_OUT, noise),
    )
    assert held_out > by_noise + 0.25, (fit_rate, held_out, by_noise)  # measured: margins 0.34–0.69
    assert held_out > fit_rate - 0.25, (fit_rate, held_out)  # fitted on one split, it transfers to the other
    result = attack.with_perturbation(delta)(model, HELD_OUT, DATA.test.labels)
    assert ((result.x_adv >= 0) & (result.x_adv <= 1)).all()
    assert torch.allclose(result.x_adv, (HELD_OUT + delta).clamp(0, 1), atol=1e-6)  # one δ for every image


def test_universal_fit_is_deterministic_for_a_seed():
    model = tiny_model()
    fit = lambda seed: Universal(eps=0.2, method="sgd", max_passes=2, batch_size=32, seed=seed).fit(  # noqa: E731
        model, FIT, progress=False
    )
    assert torch.equal(fit(3), fit(3))
    assert not torch.equal(fit(3), fit(4))  # the seed orders the sweeps


def test_fit_accepts_a_loader_a_split_and_a_tensor_alike():
    model = tiny_model()
    attack = Universal(eps=0.2, method="sgd", max_passes=1, batch_size=256)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(FIT, DATA.train.labels), batch_size=50)
    expected = attack.fit(model, FIT, progress=False)
    assert torch.equal(attack.fit(model, loader, progress=False), expected)
    assert torch.equal(attack.fit(model, DATA.train, progress=False), expected)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        attack.fit(model, FIT * 2, progress=False)


def test_targeted_universal_perturbation_pulls_images_toward_one_class():
    model = tiny_model()
    before = fooling_rate(model, HELD_OUT, torch.zeros(FIT.shape[1:]), target_class=2)
    delta = Universal(eps=0.4, method="sgd", target_class=2, fooling_goal=0.95).fit(model, FIT, progress=False)
    assert fooling_rate(model, HELD_OUT, delta, target_class=2) > before + 0.4


def test_a_perturbation_outside_the_budget_or_of_the_wrong_shape_is_refused():
    model = tiny_model()
    with pytest.raises(ConfigError, match="norm"):
        Universal(eps=0.1, perturbation=torch.full(FIT.shape[1:], 0.2))
    attack = Universal(eps=0.1, perturbation=torch.zeros(1, 5, 5))
    with pytest.raises(ConfigError, match="images"):
        attack(model, HELD_OUT[:4], DATA.test.labels[:4])


def test_perturbation_files_round_trip(tmp_path):
    delta = (torch.rand(3, 9, 7, generator=torch.Generator().manual_seed(0)) - 0.5) * 0.2
    exact, png = save_perturbation(tmp_path / "uap-eps0.1", delta, {"eps": 0.1, "norm": "linf"})
    assert exact.name == "uap-eps0.1.safetensors" and png.name == "uap-eps0.1.png"
    loaded, record = load_perturbation(exact)
    assert torch.equal(loaded, delta) and record == {"eps": 0.1, "norm": "linf"}
    from_png, record = load_perturbation(png)
    scale = delta.abs().max()
    assert (from_png - delta).abs().max() <= scale / 255 + 1e-6 and from_png.abs().max() <= scale + 1e-6
    assert record["norm"] == "linf"
    grey, _ = save_perturbation(tmp_path / "grey", delta[:1], {})
    assert load_perturbation(grey.with_suffix(".png"))[0].shape == (1, 9, 7)


def test_broken_perturbation_files_are_one_line_errors(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not a file at all")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG broken")
    for name, message in [
        ("junk.safetensors", "not a safetensors"),
        ("junk.png", "not a readable PNG"),
        ("missing.safetensors", "does not exist"),
    ]:
        with pytest.raises(CheckpointError, match=message):
            load_perturbation(tmp_path / name)


def test_fitting_images_without_a_channel_axis_are_one_line_error():
    with pytest.raises(ConfigError, match=r"N×C×H×W.*shape \(4, 28, 28\)") as err:
        Universal(eps=0.1).fit(tiny_model(), torch.rand(4, 28, 28))
    assert "\n" not in str(err.value)


def test_a_targeted_universal_perturbation_succeeds_only_on_its_target():
    """With ``target_class``, success, robust accuracy and the fooling rate count the target class only."""
    from robustkit.data.base import Split
    from robustkit.evaluation.engine import evaluate_attack

    model, x, y = tiny_model(), HELD_OUT, DATA.test.labels
    delta = Universal(eps=0.3, method="sgd", max_passes=2).fit(model, FIT, progress=False)  # errors go to 2 and 3
    attack = Universal(eps=0.3, target_class=2).with_perturbation(delta)
    with torch.no_grad():
        clean, pred = model(x).argmax(1), model((x + attack.perturbation).clamp(0, 1)).argmax(1)
    to_target = (pred == 2) & (y != 2)
    assert ((pred != y) & (pred != 2)).any() and to_target.any()  # both kinds of misclassification occur
    assert torch.equal(attack(model, x, y).success, to_target)
    evaluation = evaluate_attack(model, Split(x, y), attack, progress=False)
    assert torch.equal(evaluation.robust, (clean == y) & ~to_target)
    eligible = clean != 2
    assert attack.extra_metrics(model, x)["fooling_rate"] == pytest.approx(
        ((pred == 2) & eligible).sum().item() / eligible.sum().item()
    )
    assert fooling_rate(model, x, torch.zeros(x.shape[1:]), target_class=int(clean[0])) == 0  # none moved there


class CountingModel(nn.Module):
    """Counts the images the wrapped model sees, a measure of an attack's cost."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.images = model, 0

    def forward(self, x):
        self.images += len(x)
        return self.model(x)


def test_the_default_fit_costs_two_passes_per_image_per_sweep():
    """The default method is SGD: a forward+backward per image per sweep, plus the sweep's fooling rate.
    (DeepFool, the former default, spends a forward per linearisation and a backward per candidate class.)"""
    model = CountingModel(tiny_model())
    attack = Universal(eps=0.05)
    attack.fit(model, FIT, progress=False)
    assert attack.method == "sgd"
    assert model.images <= (1 + 2 * attack.max_passes) * len(FIT)  # 1: the clean reference predictions


def test_the_progress_bar_shows_the_passes_and_the_fitting_sets_fooling_rate(monkeypatch):
    import attacks.universal

    shown, counted = [], []

    class Bar:
        def __init__(self, *args, total, **kwargs):
            self.total = total

        def update(self, n):
            counted.append(n)

        def set_postfix_str(self, text):
            shown.append(text)

        def close(self):
            pass

    monkeypatch.setattr(attacks.universal, "progress_bar", Bar)
    model = tiny_model()
    delta = Universal(eps=0.05, max_passes=3, fooling_goal=1.0, batch_size=64).fit(model, FIT)
    assert sum(counted) == 3 * len(FIT) and shown[0].startswith("pass 1/3, fooling ≈")
    assert shown[-1] == f"pass 3/3, fooling {fooling_rate(model, FIT, delta):.3f}"
