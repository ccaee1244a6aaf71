"""Adversarial training quality: standard vs Madry vs fast vs TRADES, each with its default recipe.

Trains each on the full Fashion-MNIST training split on this machine, then reports training time,
clean test accuracy (10k images) and PGD-20 robust accuracy (L∞, step 2.5·ε/20, random start) on
the fixed 1000-image evaluation subset, with every adversarial example verified.

    python benchmarks/adversarial_training.py [--model smallcnn] [--eps 0.1] [--defenses none,madry,fast]
"""

from __future__ import annotations

import argparse
import logging

import torch

from attacks import PGD
from robustkit.data import get_dataset
from robustkit.data.base import Split
from robustkit.evaluation.engine import evaluate_attack
from robustkit.predict import accuracy
from robustkit.registry import DEFENSES
from robustkit.weights.cache import train_and_save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--defenses", default="none,madry,fast")
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--out-dir", default="runs/adversarial_training")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    data = get_dataset("fashion-mnist")
    subset = data.test.subset(args.n_samples, seed=0)
    attack = PGD(eps=args.eps, steps=20)
    rows = []
    for name in args.defenses.split(","):
        defense = None if name == "none" else DEFENSES.build(name, eps=args.eps)
        model, record, result, path = train_and_save(
            args.model,
            data,
            device=torch.device("cpu"),
            defense=defense,
            out=f"{args.out_dir}/{args.model}-{name}.safetensors",
        )
        evaluation = evaluate_attack(model, Split(subset.images, subset.labels), attack, progress=False)
        assert evaluation.n_unverified == 0
        rows.append(
            (
                name,
                record.epochs,
                result.seconds,
                accuracy(model, data.test),
                evaluation.clean_accuracy,
                evaluation.robust_accuracy,
            )
        )
        print(f"done: {rows[-1]}", flush=True)
    print(f"\n{args.model}, fashion-mnist, L∞ ε={args.eps}; robust = PGD-20 on {args.n_samples} test images")
    print(
        f"{'defense':<8} {'epochs':>6} {'train s':>8} {'clean (10k)':>12} {'clean (subset)':>15} {'PGD-20 robust':>14}"
    )
    for name, epochs, seconds, clean, clean_sub, robust in rows:
        print(f"{name:<8} {epochs:>6} {seconds:>8.0f} {clean:>12.4f} {clean_sub:>15.4f} {robust:>14.4f}")


if __name__ == "__main__":
    main()
