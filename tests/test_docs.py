"""The site's examples run as written (issue 36): every ```python block of docs/ (the hand-written pages and
the reference generated from the plugins' docstrings) executes on small stand-in data, and every
``robustkit …`` command in docs/ and README.md parses against the real CLI, with names the registries know
and ``-o`` keys the attack takes. The site cannot drift from the code without one of these failing."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data import write_idx_pair
from torch import nn

import robustkit
from robustkit.registry import ATTACKS, DEFENSES, MODELS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
_spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
gen_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_reference)


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def page_blocks(path: Path) -> list[str]:
    return blocks(path.read_text(encoding="utf-8"), "python")


def reference_examples() -> list[tuple[str, str, str]]:
    """(kind, plugin, code) per ```python block of the generated reference pages."""
    found = []
    for kind in gen_reference.PAGES:
        registry = gen_reference.REGISTRIES[kind]
        for name in registry.list():
            for code in blocks(gen_reference.entry(kind, name, registry.get(name)), "python"):
                found.append((kind, name, code))
    return found


class Tiny(nn.Module):
    """A seeded linear classifier of 1×28×28 images: every attack's example runs on it in milliseconds."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(10, 784, generator=torch.Generator().manual_seed(0)) * 0.05)
            self.linear.bias.zero_()

    def forward(self, x):
        return self.linear(x.flatten(1))


class SizeNoting(nn.Module):
    """Any nn.Module classifier: pooled to 4×4, then linear; it notes the image sizes it is shown."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.pool, self.linear, self.sizes = nn.AdaptiveAvgPool2d(4), nn.Linear(48, classes), set()

    def forward(self, x):
        self.sizes.add(tuple(x.shape[-2:]))
        return self.linear(self.pool(x).flatten(1))


def batch() -> dict:
    """What the pages call ``model``, ``x`` and ``y``: a classifier and 4 images it classifies correctly."""
    model = Tiny().eval()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    return {"model": model, "x": x, "y": y}


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    """Fashion-MNIST as a few IDX images where ROBUSTKIT_DATA points, ./pets (an image folder of two
    classes) and ./benchmarks (the repository's), in a fresh working directory."""
    draw = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (56, 28, 28), generator=draw, dtype=torch.uint8)
    labels = torch.randint(0, 10, (56,), generator=draw, dtype=torch.uint8)
    write_idx_pair(tmp_path / "data" / "fashion-mnist", "train", images[:40], labels[:40])
    write_idx_pair(tmp_path / "data" / "fashion-mnist", "t10k", images[40:], labels[40:])
    monkeypatch.setenv("ROBUSTKIT_DATA", str(tmp_path / "data"))
    rng = np.random.default_rng(0)
    for kind in ("cat", "dog"):
        (tmp_path / "pets" / kind).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
                tmp_path / "pets" / kind / f"{i}.png"
            )
    (tmp_path / "benchmarks").symlink_to(ROOT / "benchmarks")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def registries_restored():
    """A page that registers a plugin (the plugin guide) leaves the registries as it found them."""
    saved = [(r, dict(r._entries), dict(r._names)) for r in gen_reference.REGISTRIES.values()]
    yield
    for registry, entries, names in saved:
        registry._entries, registry._names = entries, names


def run_code(code: str, where: str, namespace: dict) -> dict:
    exec(compile(code, where, "exec"), namespace)
    return namespace


def run_page(path: Path, namespace: dict) -> dict:
    for code in page_blocks(path):
        run_code(code, str(path), namespace)
    return namespace


RUNNABLE = [p for p in PAGES if page_blocks(p)]


def test_the_pages_hold_examples():
    names = {p.relative_to(DOCS).as_posix() for p in RUNNABLE}
    assert {"get-started/own-model.md", "guides/plugins.md", "explanation/verification.md"} <= names


@pytest.mark.parametrize("path", [p for p in RUNNABLE if p.name != "own-model.md"], ids=lambda p: p.stem)
def test_a_page_runs_as_written(path, stand_ins, registries_restored):
    run_page(path, batch())


def test_the_evaluate_model_examples_run_as_written(stand_ins, monkeypatch):
    real, calls = robustkit.evaluate_model, []

    def noted(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(robustkit, "evaluate_model", noted)
    my_module = SizeNoting(classes=2)
    run_page(DOCS / "get-started" / "own-model.md", {"my_module": my_module})
    named, module = calls
    assert named.record["model"] == "smallcnn" and named.record["settings"]["steps"] == 20
    assert named.record["n"] == 16  # n_samples=1000 of a 16-image test split: all of it
    assert module.record["settings"]["restarts"] == 2 and module.record["dataset"] == "imagefolder"
    assert module.record["n"] == 4  # the 20 % of 20 images the folder's seeded split tests on
    assert my_module.sizes == {(32, 32)}  # image_size=32 reached the data set, not its default 64


REFERENCE = reference_examples()


def test_every_attack_s_reference_entry_has_an_example():
    assert {name for kind, name, _ in REFERENCE if kind == "attacks"} == set(ATTACKS.list())


def reference_namespace() -> dict:
    """The names the reference pages' examples use, as their introduction says (``gen_reference.NAMES``)."""
    from defenses import GaussianNoise

    namespace = batch()
    namespace.update(
        t=(namespace["y"] + 1) % 10,
        noisy_model=GaussianNoise(sigma=0.1).wrap(namespace["model"]),
        train_images=torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(2)),
        data=robustkit.get_dataset("fashion-mnist"),
        blank=torch.full((10, 1, 28, 28), 0.5),
        classes=torch.arange(10),
        x_test=namespace["x"],
        y_test=namespace["y"],
    )
    assert set(namespace) == set(gen_reference.NAMES)
    return namespace


@pytest.mark.parametrize("kind, name, code", REFERENCE, ids=[f"{k}-{n}-{i}" for i, (k, n, _) in enumerate(REFERENCE)])
def test_a_docstring_example_runs(kind, name, code, stand_ins):
    run_code(code, f"{kind}/{name}", reference_namespace())


# ---- shell examples ----


def commands(text: str) -> list[list[str]]:
    """The arguments after ``robustkit`` (or ``-m robustkit``) of each command in the ```bash blocks."""
    found = []
    for block in blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(re.sub(r"\$\w+", "0", line), posix=True, punctuation_chars=";&|")
            lexer.whitespace_split = True
            command: list[str] = []
            for token in [*lexer, ";"]:
                if token and set(token) <= set(";&|"):
                    starts = [i for i, t in enumerate(command) if t.endswith("robustkit")]
                    if starts:
                        found.append(command[starts[0] + 1 :])
                    command = []
                else:
                    command.append(token)
    return found


SHELL = [(path, args) for path in [ROOT / "README.md", *PAGES] for args in commands(path.read_text(encoding="utf-8"))]


def test_the_pages_hold_commands():
    assert len(SHELL) > 40 and any(path.name == "README.md" for path, _ in SHELL)
    assert sum("-o" in args for _, args in SHELL) > 5  # the settings the check below holds against the attack


@pytest.mark.parametrize("path, args", SHELL, ids=[f"{p.stem}-{i}" for i, (p, _) in enumerate(SHELL)])
def test_a_command_parses(path, args, tmp_path, monkeypatch):
    import click

    from robustkit.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "benchmarks").symlink_to(ROOT / "benchmarks")
    for arg in args:  # files the example names as if the reader had them
        if re.search(r"\.(safetensors|pth?|sqlite|csv)$", arg) and not Path(arg).exists():
            Path(arg).parent.mkdir(parents=True, exist_ok=True)
            Path(arg).touch()
    ctx = main.make_context("robustkit", list(args))
    name, command, rest = main.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
    try:
        params = command.make_context(name, rest, parent=ctx).params
    except click.UsageError as err:
        pytest.fail(f"{path.name}: robustkit {shlex.join(args)}: {err.format_message()}")
    attack = params.get("attack_name")  # evaluate's; train and benchmark take none
    if attack:
        assert attack in ATTACKS
        fields = {f.name for f in dataclasses.fields(ATTACKS.get(attack))}
        for option in params["options"]:
            assert option.split("=")[0] in fields, f"{attack} has no setting {option}"
    if params.get("defense") not in (None, "none"):
        assert params["defense"] in DEFENSES
    model = params.get("model_name")
    if model and ":" not in model:
        assert model in MODELS
