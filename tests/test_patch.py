"""Adversarial patches: the window check against brute force, the per-image and universal attacks, files, CLI, suites."""

import json

import numpy as np
import pytest
import torch
import yaml
from attack_fixtures import DATA, tiny_batch, tiny_model
from click.testing import CliRunner

from attacks import AdversarialPatch, UniversalPatch
from attacks.patch import paste
from attacks.universal_patch import patch_fooling_rate
from robustkit.cli import main
from robustkit.data.base import Split
from robustkit.errors import ConfigError
from robustkit.evaluation.engine import evaluate_attack
from robustkit.predict import predict
from robustkit.results.perturbation_file import load_perturbation, save_perturbation
from robustkit.threats import default_eps, threat_model

FIT, HELD_OUT, LABELS = DATA.train.images, DATA.test.images, DATA.test.labels


# ---- the threat model's check, against an independent brute-force window search ----


def brute_force_side(x: torch.Tensor, x_adv: torch.Tensor) -> list[int]:
    """Per sample, the smallest k such that sliding a k×k window somewhere covers every changed pixel
    (the window may hang over the border: a change wider than the image is tall still has a side)."""
    sides = []
    for clean, adv in zip(x, x_adv, strict=True):
        changed = (clean != adv).any(0)
        height, width = changed.shape
        total = int(changed.sum())
        for k in range(0, max(height, width) + 1):
            windows = ((max(i, 0), i + k, max(j, 0), j + k) for i in range(1 - k, height) for j in range(1 - k, width))
            if total == 0 or any(int(changed[a:b, c:d].sum()) == total for a, b, c, d in windows):
                sides.append(k)
                break
    return sides


def random_changes(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Small random images with changes of every shape the check must judge: none, one pixel in one
    channel, a block, two separated blobs, scattered pixels."""
    g = torch.Generator().manual_seed(seed)
    n, channels = 24, 1 + 2 * (seed % 2)
    height, width = int(torch.randint(5, 10, (1,), generator=g)), int(torch.randint(5, 10, (1,), generator=g))
    x = torch.rand(n, channels, height, width, generator=g)
    x_adv = x.clone()
    for i in range(1, n):
        kind = i % 4
        blobs = 1 if kind in (1, 2) else 2 if kind == 3 else int(torch.randint(3, 6, (1,), generator=g))
        for _ in range(blobs):
            h = 1 if kind in (1, 0) else int(torch.randint(1, height + 1, (1,), generator=g))
            w = 1 if kind in (1, 0) else int(torch.randint(1, width + 1, (1,), generator=g))
            r = int(torch.randint(0, height - h + 1, (1,), generator=g))
            c = int(torch.randint(0, width - w + 1, (1,), generator=g))
            ch = int(torch.randint(0, channels, (1,), generator=g))
            x_adv[i, ch, r : r + h, c : c + w] = 1 - x_adv[i, ch, r : r + h, c : c + w]  # always a change
    return x, x_adv


@pytest.mark.parametrize("seed", range(6))
def test_contains_and_size_agree_with_a_brute_force_window_search(seed):
    x, x_adv = random_changes(seed)
    truth = brute_force_side(x, x_adv)
    assert truth[0] == 0 and len(set(truth)) > 2  # no change, and a spread of sizes: the comparison has teeth
    for side in range(1, min(x.shape[-2:]) + 1):
        threat = threat_model("patch", side)
        assert threat.contains(x, x_adv).tolist() == [t <= side for t in truth], side
    assert threat_model("patch", 1).size(x, x_adv).tolist() == [float(t) for t in truth]


def test_the_check_accepts_a_change_exactly_at_the_windows_edge_and_refuses_one_pixel_more():
    x = torch.zeros(3, 1, 8, 8)
    x_adv = x.clone()
    x_adv[0, 0, 2, 1], x_adv[0, 0, 5, 4] = 1, 1  # opposite corners of a 4×4 window only
    x_adv[1, 0, 2, 1], x_adv[1, 0, 6, 4] = 1, 1  # 5 rows apart
    x_adv[2, 0, 0, 0], x_adv[2, 0, 7, 7] = 1, 1  # two separated blobs: no window but the whole image
    threat = threat_model("patch", 4)
    assert threat.contains(x, x_adv).tolist() == [True, False, False]
    assert threat.size(x, x_adv).tolist() == [4.0, 5.0, 8.0]
    assert threat.contains(x, x).all() and (threat.size(x, x) == 0).all()


def test_the_patch_budget_is_a_whole_side_that_fits_the_image():
    assert default_eps("patch", 1) == 4 and threat_model("patch", 4).describe() == {"norm": "patch", "eps": 4.0}
    for bad in (0, -1, 2.5):
        with pytest.raises(ConfigError, match="whole number of pixels ≥ 1|eps must be"):
            threat_model("patch", bad)
    x = torch.zeros(2, 1, 12, 10)
    with pytest.raises(ConfigError, match=r"^a patch of side 11 does not fit a 12×10 image$"):
        threat_model("patch", 11).contains(x, x)
    model, (images, labels) = tiny_model(), tiny_batch(4)
    with pytest.raises(ConfigError, match=r"^a patch of side 13 does not fit a 12×12 image$"):
        AdversarialPatch(eps=13)(model, images, labels)
    with pytest.raises(ConfigError, match="does not fit"):
        UniversalPatch(eps=13).fit(model, FIT, progress=False)
    with pytest.raises(ConfigError, match="attacks patch, not 'linf'"):
        AdversarialPatch(eps=4, norm="linf")
    with pytest.raises(ConfigError, match="steps ≥ 1"):
        AdversarialPatch(eps=4, locations=0)


# ---- the per-image attack ----


def test_the_attack_changes_only_the_window_its_evidence_reports_and_passes_the_check():
    model, (x, y) = tiny_model(), tiny_batch(32)
    attack = AdversarialPatch(eps=3, steps=5)
    result = attack(model, x, y)
    assert AdversarialPatch(eps=3).threat.contains(x, result.x_adv).all()
    assert set(result.norms.tolist()) <= {0.0, 1.0, 2.0, 3.0}
    outside = torch.ones_like(x, dtype=torch.bool)
    for i, (r, c) in enumerate(zip(result.evidence["row"].tolist(), result.evidence["col"].tolist(), strict=True)):
        outside[i, :, r : r + 3, c : c + 3] = False
    assert torch.equal(result.x_adv[outside], x[outside])
    assert result.queries.max() <= attack.locations * (5 + 1)


def test_the_attack_beats_random_patches_at_the_locations_it_chose():
    model, (x, y) = tiny_model(), tiny_batch(64)
    result = AdversarialPatch(eps=3)(model, x, y)
    rows, cols = result.evidence["row"], result.evidence["col"]
    g = torch.Generator().manual_seed(0)
    random_success = torch.zeros(len(x), dtype=torch.bool)
    for _ in range(8):  # eight random patches per image, where the attack found its best place
        noise = torch.rand(len(x), 1, 3, 3, generator=g)
        random_success |= predict(model, paste(x, noise, rows, cols)) != y
    assert result.success.float().mean() > random_success.float().mean() + 0.2, (
        result.success.float().mean(),
        random_success.float().mean(),
    )


def test_targeted_patches_reach_the_target():
    model, (x, y) = tiny_model(), tiny_batch(32)
    target = (y + 1) % 4
    result = AdversarialPatch(eps=4, steps=20)(model, x, y, target=target)
    assert torch.equal(result.success, predict(model, result.x_adv) == target)
    assert result.success.float().mean() > 0.3


def test_a_samples_patch_does_not_depend_on_its_batch():
    model, (x, y) = tiny_model(), tiny_batch(32)
    attack = AdversarialPatch(eps=3, steps=4, seed=5)
    whole = attack(model, x, y)
    index = torch.arange(32)
    parts = [attack(model, x[i : i + 7], y[i : i + 7], index=index[i : i + 7]) for i in range(0, 32, 7)]
    assert torch.equal(whole.x_adv, torch.cat([p.x_adv for p in parts]))
    for key in ("row", "col"):
        assert torch.equal(whole.evidence[key], torch.cat([p.evidence[key] for p in parts]))
    big = evaluate_attack(tiny_model(), Split(x, y), attack, batch_size=32, progress=False)
    small = evaluate_attack(tiny_model(), Split(x, y), attack, batch_size=5, progress=False)
    assert torch.equal(big.robust, small.robust) and torch.allclose(big.norms, small.norms, equal_nan=True)
    assert 0 < int(big.robust.sum()) < int(big.clean_correct.sum())


def test_chunking_the_candidates_changes_nothing_but_memory():
    model, (x, y) = tiny_model(), tiny_batch(24)
    for target in (None, (y + 1) % 4):
        whole = AdversarialPatch(eps=3, steps=3, locations=5)(model, x, y, target=target)
        chunked = AdversarialPatch(eps=3, steps=3, locations=5, max_batch=7)(model, x, y, target=target)
        assert torch.equal(whole.x_adv, chunked.x_adv) and torch.equal(whole.queries, chunked.queries)
        assert all(torch.equal(whole.evidence[k], chunked.evidence[k]) for k in ("row", "col"))
    with pytest.raises(ConfigError, match="max_batch ≥ 1"):
        AdversarialPatch(eps=3, max_batch=0)


# ---- the universal patch ----


@pytest.fixture(scope="module")
def fitted():
    model = tiny_model()
    attack = UniversalPatch(eps=4, passes=10)
    return model, attack, attack.fit(model, FIT, progress=False)


def test_a_universal_patch_fitted_on_training_images_fools_unseen_ones_better_than_random_patches(fitted):
    model, attack, patch = fitted
    assert patch.shape == (1, 4, 4) and patch.dtype == torch.float32 and 0 <= patch.min() and patch.max() <= 1
    rows, cols = attack.places(HELD_OUT)
    g = torch.Generator().manual_seed(0)
    random_rates = [patch_fooling_rate(model, HELD_OUT, torch.rand(1, 4, 4, generator=g), rows, cols) for _ in range(5)]
    rate = patch_fooling_rate(model, HELD_OUT, patch, rows, cols)
    assert rate > max(random_rates) + 0.1, (rate, random_rates)
    result = attack.with_perturbation(patch)(model, HELD_OUT, LABELS)
    assert attack.threat.contains(HELD_OUT, result.x_adv).all() and (result.norms <= 4).all()
    assert torch.equal(
        result.x_adv,
        paste(HELD_OUT, patch.expand(len(HELD_OUT), -1, -1, -1), result.evidence["row"], result.evidence["col"]),
    )
    assert attack.with_perturbation(patch).extra_metrics(model, HELD_OUT) == {"fooling_rate": rate}


def test_a_saved_patch_loads_and_replays_identically(fitted, tmp_path):
    model, attack, patch = fitted
    exact, png = save_perturbation(tmp_path / "patch-eps4", patch, {"eps": 4, "norm": "patch"}, images=True)
    loaded, record = load_perturbation(exact)
    assert torch.equal(loaded, patch) and record == {"eps": 4, "norm": "patch"}
    before = attack.with_perturbation(patch)(model, HELD_OUT, LABELS)
    after = attack.with_perturbation(loaded)(model, HELD_OUT, LABELS)
    assert torch.equal(before.x_adv, after.x_adv) and torch.equal(before.success, after.success)
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (256, 256)  # enlarged to be printed, as it looks (no mid-grey amplification)
    printed, _ = load_perturbation(png)
    assert printed.shape == patch.shape and (printed - patch).abs().max() <= 1 / 510 + 1e-6
    with pytest.raises(Exception, match="outside"):
        save_perturbation(tmp_path / "bad", patch - 0.5, {}, images=True)


def test_fitting_is_deterministic_for_a_seed_and_the_patch_is_checked():
    model = tiny_model()
    fit = lambda seed: UniversalPatch(eps=3, passes=1, seed=seed).fit(model, FIT, progress=False)  # noqa: E731
    assert torch.equal(fit(1), fit(1)) and not torch.equal(fit(1), fit(2))
    with pytest.raises(ConfigError, match="the patch is 3×3, the threat model's side 4"):
        UniversalPatch(eps=4, perturbation=torch.zeros(1, 3, 3))
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        UniversalPatch(eps=3, perturbation=torch.full((1, 3, 3), 2.0))
    with pytest.raises(ConfigError, match="channel"):
        UniversalPatch(eps=3, perturbation=torch.zeros(3, 3, 3))(model, HELD_OUT[:4], LABELS[:4])


def test_a_targeted_universal_patch_succeeds_only_on_its_target():
    model = tiny_model()
    attack = UniversalPatch(eps=5, passes=10, target_class=2)
    patch = attack.fit(model, FIT, progress=False)
    rows, cols = attack.places(HELD_OUT)
    before = patch_fooling_rate(
        model, HELD_OUT, torch.rand(1, 5, 5, generator=torch.Generator().manual_seed(0)), rows, cols, target_class=2
    )
    after = patch_fooling_rate(model, HELD_OUT, patch, rows, cols, target_class=2)
    assert after > before + 0.2, (before, after)
    result = attack.with_perturbation(patch)(model, HELD_OUT, LABELS)
    assert torch.equal(result.success, (predict(model, result.x_adv) == 2) & (LABELS != 2))


# ---- the command line and a suite ----


def test_evaluate_patch_attacks_through_the_cli(tmp_path):
    runner, out = CliRunner(), tmp_path / "r.json"
    base = ["evaluate", "--model", "lenet5", "--dataset", "synthetic", "--n-samples", "16", "--output", str(out)]
    result = runner.invoke(main, [*base, "--attack", "patch", "--eps", "4"])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())[0]
    assert record["norm"] == "patch" and record["eps"] == 4 and record["n_unverified"] == 0
    fitted = runner.invoke(
        main,
        [
            *base,
            "--attack",
            "universal-patch",
            "--eps",
            "3",
            "--fit-samples",
            "64",
            "-o",
            "passes=2",
            "--save-examples",
            str(tmp_path / "ex"),
        ],
    )
    assert fitted.exit_code == 0, fitted.output
    first = json.loads(out.read_text())[1]
    figures = json.loads(first["extra"])
    assert "printable view" in fitted.output and 0 <= figures["fooling_rate"] <= 1 and figures["fit_samples"] == 64
    replayed = runner.invoke(main, [*base, "--attack", "universal-patch", "--perturbation", figures["patch_file"]])
    assert replayed.exit_code == 0, replayed.output
    again = json.loads(out.read_text())[2]
    for key in ("eps", "norm", "robust_accuracy", "settings"):
        assert again[key] == first[key], key
    assert json.loads(again["extra"])["fooling_rate"] == figures["fooling_rate"]
    too_big = runner.invoke(main, [*base, "--attack", "patch", "--eps", "40"])
    assert too_big.exit_code == 1 and "a patch of side 40 does not fit a" in too_big.output, too_big.output


def test_a_tiny_suite_with_patch_columns_runs_end_to_end(tmp_path):
    from robustkit.evaluation.runner import run_suite
    from robustkit.results.leaderboard import leaderboard, publish
    from robustkit.results.store import read_stores
    from robustkit.suites.spec import load_suite

    suite = {
        "name": "tiny-patch",
        "dataset": "synthetic",
        "n_samples": 24,
        "seed": 0,
        "fit_samples": 64,
        "batch_size": 16,
        "checks": False,
        "models": [{"model": "lenet5", "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "precision": "fp32"}}],
        "attacks": [
            {"attack": "patch", "norm": "patch", "eps": [3, 5], "settings": {"steps": 3}},
            {"attack": "universal-patch", "norm": "patch", "eps": [3], "settings": {"passes": 1}},
            {"attack": "fgsm", "norm": "linf", "eps": [0.1]},
        ],
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    loaded = load_suite(path)
    assert [c.title for c in loaded.cells()][:2] == ["lenet5 × patch patch ε=3", "lenet5 × patch patch ε=5"]
    summary = run_suite(loaded, tmp_path / "store.sqlite", device=torch.device("cpu"), progress=False)
    assert summary.evaluated == 4
    cells = read_stores([tmp_path / "store.sqlite"])
    assert (cells["n_unverified"] == 0).all()
    board = leaderboard(cells).set_index("entry")
    patch3 = cells[(cells["norm"] == "patch") & (cells["eps"] == 3)]
    bits = np.stack([np.unpackbits(np.frombuffer(b, dtype=np.uint8))[:24] for b in patch3["robust"]])
    assert board.loc["lenet5", "worst patch ε=3"] == pytest.approx(bits.all(axis=0).mean())
    assert "patch patch ε=5" in board.columns and "universal-patch patch ε=3" in board.columns
    written = publish(cells, tmp_path / "board", "tiny-patch")
    assert all(p.is_file() for p in written)
    again = run_suite(loaded, tmp_path / "store.sqlite", device=torch.device("cpu"), progress=False)
    assert again.skipped == 4 and again.evaluated == 0  # cell keys of patch cells are stable
