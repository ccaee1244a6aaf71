"""Randomness belongs to the sample: draws keyed by (seed, index), outcomes independent of batching."""

import textwrap

import pytest
import torch
from attack_fixtures import DATA, tiny_model
from torchrun import torchrun

from attacks import PGD, FastEnsemble, OnePixel, PatchRS, SparseRS, Square
from robustkit.data.base import Split
from robustkit.evaluation.engine import evaluate_attack
from robustkit.per_sample_random import SampleRandom, mix_int

_GOLDEN = 0x9E3779B97F4A7C15


def reference_bits(seed: int, index: int, draw: int, element: int) -> int:
    """The documented construction, in plain Python integers (splitmix64 finaliser, wrap at 2^64)."""
    key = mix_int(mix_int(seed + _GOLDEN) ^ mix_int((draw + 1) * _GOLDEN))
    return mix_int(mix_int(index ^ key) + (element + 1) * _GOLDEN)


def test_mix_is_splitmix64():
    # splitmix64's published first output for seed 0 is mix(0 + golden) = 0xE220A8397B1DCDAF
    assert mix_int(_GOLDEN) == 0xE220A8397B1DCDAF


def test_bits_equal_the_plain_integer_construction():
    rng = SampleRandom(7, torch.tensor([0, 5, 123456789]))
    first, second = rng.bits(3), rng.bits(2, 2)
    for row, index in enumerate([0, 5, 123456789]):
        for element in range(3):
            assert int(first[row, element]) & (2**64 - 1) == reference_bits(7, index, 0, element)
        for element in range(4):
            assert int(second[row].flatten()[element]) & (2**64 - 1) == reference_bits(7, index, 1, element)


def test_draws_made_together_are_the_draws_made_in_turn():
    # Square places its window and signs in one call (a small batch pays launches, not work): same numbers
    index = torch.tensor([0, 5, 123456789])
    together, in_turn = SampleRandom(7, index), SampleRandom(7, index)
    top, left, signs = together.randints((25, (1,)), (torch.tensor([3, 10, 28]), (1,)), (2, (1, 1, 3)))
    assert torch.equal(top, in_turn.randint(25, 1)) and torch.equal(left, in_turn.randint(torch.tensor([3, 10, 28]), 1))
    assert torch.equal(signs, in_turn.randint(2, 1, 1, 3))
    first, second = together.bits_of((3,), (2, 2))
    for row, number in enumerate(index.tolist()):  # the fourth and fifth draws, against the plain construction
        assert [int(v) & (2**64 - 1) for v in first[row]] == [reference_bits(7, number, 3, e) for e in range(3)]
        assert [int(v) & (2**64 - 1) for v in second[row].flatten()] == [
            reference_bits(7, number, 4, e) for e in range(4)
        ]
    in_turn.bits(3), in_turn.bits(2, 2)
    assert torch.equal(together.rand(4), in_turn.rand(4))  # and the count advanced by one per draw


def test_a_samples_draws_do_not_depend_on_its_batch():
    alone = SampleRandom(3, torch.tensor([42]))
    batch = SampleRandom(3, torch.tensor([9, 42, 0, 17]))
    for _ in range(2):  # the k-th draw matches the k-th draw, whatever the rest of the batch
        assert torch.equal(alone.rand(5, 5)[0], batch.rand(5, 5)[1])
    view = batch[torch.tensor([1])]  # a view shares the count: its next draw is the third
    assert torch.equal(alone.randn(7)[0], view.randn(7)[0])
    assert not torch.equal(
        SampleRandom(4, torch.tensor([42])).rand(5)[0], SampleRandom(3, torch.tensor([42])).rand(5)[0]
    )


def test_distributions():
    rng = SampleRandom(0, torch.arange(200))
    u, z, k = rng.rand(1000), rng.randn(1000), rng.randint(torch.tensor([3] * 100 + [7] * 100), 1000)
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.002
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01 and abs((z > 1.96).float().mean() - 0.025) < 0.003
    assert set(k[:100].unique().tolist()) == {0, 1, 2} and set(k[100:].unique().tolist()) == set(range(7))


def _outcomes(attack, images, labels, batch_size):
    result = evaluate_attack(tiny_model(), Split(images, labels), attack, batch_size=batch_size, progress=False)
    return result.clean_correct, result.robust, result.norms


# on the code before per-sample randomness, these changed 19, 17, 6, 41 and 6 verdicts of 300 between batch sizes
@pytest.mark.parametrize(
    "attack, n, sizes",
    [
        (PGD(eps=0.1, steps=1, seed=1), 300, (300, 50)),  # the random start decides: the measurement
        (PGD(eps=0.15, steps=2, seed=1), 300, (300, 50)),
        (PGD(eps=0.8, norm="l2", steps=3, restarts=2, seed=2), 300, (300, 7)),
        (Square(eps=0.15, queries=30, seed=3), 300, (300, 50)),
        (Square(eps=0.1, queries=60, patience=4, seed=3), 300, (300, 50)),  # patience is the sample's own
        (FastEnsemble(eps=0.08, steps=5, targets=2, queries=40, patience=4, seed=3), 200, (200, 30)),
        (OnePixel(eps=1, population=12, generations=3, seed=4), 300, (300, 9)),
        (SparseRS(eps=2, queries=40, seed=5), 300, (300, 50)),
        (PatchRS(eps=3, queries=40, seed=6), 300, (300, 50)),
    ],
)
def test_one_cell_gives_the_same_per_sample_outcomes_at_any_batch_size(attack, n, sizes):
    images = torch.cat([DATA.test.images, DATA.train.images])[:n]
    labels = torch.cat([DATA.test.labels, DATA.train.labels])[:n]
    big, small = (_outcomes(attack, images, labels, size) for size in sizes)
    assert torch.equal(big[0], small[0]) and torch.equal(big[1], small[1])
    assert torch.allclose(big[2], small[2], equal_nan=True)
    assert 0 < big[1].sum() < big[0].sum()  # some samples broken, some not: the comparison has teeth


_TORCHRUN_SCRIPT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {tests!r})
    from attack_fixtures import DATA, tiny_model
    from attacks import PGD, Square
    from robustkit.training import distributed
    from robustkit.evaluation.engine import evaluate_attack
    from robustkit.data.base import Split
    distributed.init_from_env(torch.device("cpu"))
    images = torch.cat([DATA.test.images, DATA.train.images])[:120]
    labels = torch.cat([DATA.test.labels, DATA.train.labels])[:120]
    out = {{}}
    for name, attack in [("pgd", PGD(eps=0.05, steps=5, seed=1)), ("square", Square(eps=0.08, queries=40, seed=3))]:
        out[name] = evaluate_attack(tiny_model(), Split(images, labels), attack, batch_size=32, progress=False).robust
    if distributed.is_main():
        torch.save(out, {path!r})
""")


@pytest.mark.slow
def test_two_torchrun_processes_give_the_same_per_sample_outcomes_as_one(tmp_path):
    from pathlib import Path

    script, path = tmp_path / "evaluate.py", tmp_path / "robust.pt"
    script.write_text(_TORCHRUN_SCRIPT.format(tests=str(Path(__file__).parent), path=str(path)))
    torchrun([str(script)])
    two = torch.load(path, weights_only=True)
    images = torch.cat([DATA.test.images, DATA.train.images])[:120]
    labels = torch.cat([DATA.test.labels, DATA.train.labels])[:120]
    for name, attack in [("pgd", PGD(eps=0.05, steps=5, seed=1)), ("square", Square(eps=0.08, queries=40, seed=3))]:
        one = _outcomes(attack, images, labels, 120)[1]
        assert torch.equal(one, two[name]), name
        assert 0 < one.sum() < len(one)


_LEAVE_SCRIPT = textwrap.dedent("""
    import atexit, pathlib, sys, torch, torch.distributed as dist
    from robustkit.training import distributed
    distributed.init_from_env(torch.device("cpu"))
    assert dist.is_initialized()
    distributed.all_reduce_sum(torch.ones(1))  # work the gloo threads have seen
    rank = distributed.rank()
    atexit._run_exitfuncs()  # what the interpreter runs at exit, before its teardown
    assert not dist.is_initialized(), "the process group was left to interpreter teardown"
    pathlib.Path(sys.argv[1], f"left {rank}").touch()  # a file each: two ranks' prints can interleave mid-line
""")


@pytest.mark.slow
def test_a_torchrun_process_destroys_its_process_group_at_exit_not_in_teardown(tmp_path):
    """Issue 23 (item 15): a finished two-process run once aborted at exit (SIGABRT in both ranks,
    "terminate called without an active exception"): gloo's process group was left to interpreter
    teardown. ``init_from_env`` registers its destruction at exit; this fails without that."""
    script = tmp_path / "leave.py"
    script.write_text(_LEAVE_SCRIPT)
    torchrun([str(script), str(tmp_path)])
    assert sorted(p.name for p in tmp_path.glob("left *")) == ["left 0", "left 1"]
