"""Robust accuracy vs queries, from one run each: label-only HopSkipJump (L∞) and RayS beside score-based
Square, on standard models and on the same models behind the one-hot defense (scores hidden).

Each cell is one evaluation (``evaluate_attack``: clean-correct images attacked, every example verified)
with a 10k-query budget; the engine keeps the query count each sample was first broken at, so the
figures at 100 / 1k / 5k / 10k queries come from that one run (``Evaluation.query_curve``), each
with its 95 % Clopper–Pearson interval. Label-only attacks read labels only, so their rows on the
one-hot model equal those on the plain one; Square's margin is constant there until a label flips.

    OMP_NUM_THREADS=1 python benchmarks/label_only_queries.py [--n 100] [--models lenet5,smallcnn] [--threads 1]
        [--attacks hopskipjump,rays,square] [--outputs logits,one-hot]

Models: the cached standard checkpoints on Fashion-MNIST (trained if missing), L∞ ε = 0.1, the seeded
test subset of ``--n`` images.

Measured on lenet5 (n = 100), robust accuracy at 100 / 1k / 5k / 10k queries: HopSkipJump 0.85 / 0.47 /
0.27 / 0.18, RayS 0.68 / 0.27 / 0.09 / 0.06, Square 0.47 / 0.18 / 0.06 / 0.05 on the logits; behind the
one-hot defense the label-only rows are the same and Square stays at 0.66 / 0.61 / 0.61 / 0.61.
"""

from __future__ import annotations

import argparse

import torch

from attacks import HopSkipJump, RayS, Square
from defenses import OneHotOutput
from robustkit.data import get_dataset
from robustkit.evaluation.engine import evaluate_attack
from robustkit.weights.resolve import resolve_model

BUDGETS = (100, 1000, 5000, 10000)
EPS = 0.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="test images (the seeded subset)")
    parser.add_argument("--models", default="lenet5,smallcnn")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--attacks", default="hopskipjump,rays,square")
    parser.add_argument(
        "--outputs", default="logits,one-hot", help="the model's own scores, and/or the one-hot defense"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = get_dataset("fashion-mnist")
    subset = data.test.subset(args.n, seed=0)
    every = {
        "hopskipjump": HopSkipJump(eps=EPS, queries=BUDGETS[-1]),
        "rays": RayS(eps=EPS, queries=BUDGETS[-1]),
        "square": Square(eps=EPS, queries=BUDGETS[-1]),
    }
    attacks = [(name, every[name]) for name in args.attacks.split(",")]
    print(f"Fashion-MNIST, {args.n} test images, L∞ ε = {EPS}; robust accuracy [95 % CI] after q queries, one run each")
    print(
        f"{'model':<9} {'output':<8} {'attack':<12} {'clean':>6} "
        + " ".join(f"{f'q={b}':>21}" for b in BUDGETS)
        + f" {'seconds':>8}"
    )
    for name in args.models.split(","):
        model = resolve_model(name, data, device=torch.device("cpu")).model.eval()
        outputs = {"logits": model, "one-hot": OneHotOutput().wrap(model)}
        for output, shown in ((o, outputs[o]) for o in args.outputs.split(",")):
            for label, attack in attacks:
                result = evaluate_attack(shown, subset, attack, progress=False)
                cells = [
                    f"{a:.3f} {i.text('.3f')}"
                    for a, i in zip(
                        result.query_curve(list(BUDGETS)), result.query_curve_intervals(list(BUDGETS)), strict=False
                    )
                ]
                print(
                    f"{name:<9} {output:<8} {label:<12} {result.clean_accuracy:>6.3f} "
                    + " ".join(f"{c:>21}" for c in cells)
                    + f" {result.seconds:>8.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
