"""Threat models are registered objects: named, described, and the engine's check for every counted example."""

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from attack_fixtures import DATA, tiny_model

from robustkit.attack import Attack, Perturbed
from robustkit.data.base import Split
from robustkit.errors import ConfigError
from robustkit.evaluation.engine import evaluate_attack
from robustkit.predict import predict
from robustkit.registry import THREATS
from robustkit.suites.spec import load_suite
from robustkit.threats import L0, L2, Linf, ThreatModel, default_eps, threat_model

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mirror(ThreatModel):
    """x_adv is x mirrored left-right wherever the attack reports ``mirrored`` (and x elsewhere)."""

    name: ClassVar[str] = "mirror"

    def contains(self, x, x_adv, evidence=None):
        mirrored = evidence["mirrored"].view(-1, 1, 1, 1)
        expected = torch.where(mirrored, x.flip(-1), x)
        return (x_adv == expected).flatten(1).all(1)

    def size(self, x, x_adv, evidence=None):
        return evidence["mirrored"].float()


@dataclass(frozen=True, kw_only=True)
class MirrorAttack(Attack):
    """Mirrors every image, and claims so truthfully for even labels only (odd ones also get brightened)."""

    norm: str = "mirror"
    norms: ClassVar[tuple[str, ...]] = ("mirror",)

    def perturb(self, model, x, y, *, target, rng):
        x_adv = x.flip(-1).clone()
        lie = y % 2 == 1
        x_adv[lie] = (x_adv[lie] + 0.3).clamp(0, 1)
        return Perturbed(x_adv, evidence={"mirrored": torch.ones(len(x), dtype=torch.bool)})


@pytest.fixture
def mirror_registered(monkeypatch):
    THREATS.list()  # load the built-ins first, so the fixture's entry is not the only one
    monkeypatch.setitem(THREATS._entries, "mirror", Mirror)
    monkeypatch.setitem(THREATS._names, "mirror", "mirror")


def test_the_engine_counts_only_examples_the_threat_models_check_accepts_with_the_attacks_evidence(mirror_registered):
    model = tiny_model()
    x, y = DATA.test.images, DATA.test.labels
    result = evaluate_attack(model, Split(x, y), MirrorAttack(eps=1), batch_size=16, progress=False)
    # independent recount: a sample is broken iff its label is even, it is correctly classified, and its
    # mirror is misclassified; the brightened odd ones fail the check and are reported, not counted
    even = y % 2 == 0
    correct = predict(model, x) == y
    mirror_wrong = predict(model, x.flip(-1)) != y
    assert torch.equal(result.clean_correct & ~result.robust, correct & even & mirror_wrong)
    brightened = (x.flip(-1) + 0.3).clamp(0, 1)
    assert result.n_unverified == int((correct & ~even & (predict(model, brightened) != y)).sum())
    assert result.n_unverified > 0 and (correct & even & mirror_wrong).any()


def test_threat_models_are_registered_and_unknown_names_are_one_line():
    assert {"linf", "l2", "l0"} <= set(THREATS.list())
    assert (
        type(threat_model("L∞", 0.1)) is Linf
        and type(threat_model("l2", 1)) is L2
        and type(threat_model("l0", 3)) is L0
    )
    with pytest.raises(ConfigError, match="unknown threat model 'l7'.*available"):
        threat_model("l7", 1)
    assert default_eps("linf", 1) == 0.1 and default_eps("l2", 3) == 0.5 and default_eps("l0", 1) == 1


def test_describe_is_what_cell_keys_hash_and_keys_written_before_still_match():
    assert threat_model("linf", 0.1).describe() == {"norm": "linf", "eps": 0.1}
    assert threat_model("l0", 3).label() == "l0 ε=3"
    cell = load_suite(ROOT / "benchmarks/suites/fashion-mnist.yaml").cells()[0]
    # computed with the code before threat models were registered objects: stored cells must keep their keys
    assert cell.key("abc") == "8b9784fb6c0969da23c0c51f"


def test_the_core_never_imports_a_plugin_module():
    plugins = {"attacks", "defenses"}
    offenders = []
    for path in (ROOT / "robustkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in plugins]
    assert not offenders, offenders


@pytest.mark.parametrize(
    "norm, eps, settings, covers",
    [
        ("linf", 1.0, {}, True),
        ("linf", 0.99, {}, False),
        ("l2", 28.0, {}, True),
        ("l2", 27.9, {}, False),
        ("l1", 784.0, {}, True),
        ("l1", 783.0, {}, False),
        ("l0", 784, {}, True),
        ("l0", 783, {}, False),
        ("patch", 28, {}, True),
        ("patch", 27, {}, False),
        ("spatial", 180, {"translation": 27}, False),
        ("fooling", 0.99, {}, False),
    ],
)
def test_a_budget_that_reaches_every_image_is_pointed_out_by_each_threat_model(norm, eps, settings, covers, caplog):
    """On 1×28×28 images: L∞ from 1, L2 from the diameter √784 = 28, L1 from d = 784, L0 from all 784 pixels, a patch from side 28;
    a rotation or a fooling threshold never reaches every image."""
    from robustkit.threats.budget import warn_if_covers_box

    threat = threat_model(norm, eps, **settings)
    with caplog.at_level("WARNING", logger="robustkit.threats.budget"):
        warn_if_covers_box(threat, (1, 28, 28))
    assert ("covers the whole [0, 1] input box" in caplog.text) == covers
