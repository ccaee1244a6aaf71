"""Cost of the default gradient-masking checks against the attack's own time (target: ≤ 15 %).

``robustkit evaluate`` runs the cheap checks after every attack; this measures them side by side with
the attack they follow: PGD with its defaults on the first ``--n`` Fashion-MNIST test images, per
model entry, the same ``evaluate_model`` call a user makes. Attack seconds are the cell's (clean pass,
attack, verification); check seconds are the check run's. Entries are trained into $ROBUSTKIT_HOME
if missing (``--no-train`` refuses). The flags column shows what each entry raised (masked defenses
should raise some, the standard and Madry models none).

    python benchmarks/default_checks_cost.py [--n 1000] [--entries smallcnn:none smallcnn:madry smallcnn:bit-depth]
"""

from __future__ import annotations

import argparse
import logging

import torch

from robustkit import evaluate_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--entries", nargs="+", default=["smallcnn:none", "smallcnn:madry", "smallcnn:bit-depth"],
                        help="MODEL:DEFENSE pairs")  # fmt: skip
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-train", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.manual_seed(0)
    rows = []
    for spec in args.entries:
        model, _, defense = spec.partition(":")
        report = evaluate_model(model, "fashion-mnist", "pgd", n_samples=args.n, defense=defense or "none",
                                checks="default", device=args.device, no_train=args.no_train, progress=False)  # fmt: skip
        attack, checks = report.record["seconds"], report.check_record["seconds"]
        rows.append((spec, report.robust_accuracy, attack, checks, checks / attack, report.checks.summary()))
    header = f"| {'entry':<22} | robust acc | attack s | checks s | checks / attack | flags"
    print(f"PGD defaults, {args.n} Fashion-MNIST test images, default checks ({torch.get_num_threads()} threads)\n")
    print(header)
    print("|" + "-" * 24 + "|-----------:|---------:|---------:|----------------:|------")
    for spec, robust, attack, checks, ratio, flags in rows:
        print(f"| {spec:<22} | {robust:10.4f} | {attack:8.2f} | {checks:8.2f} | {ratio:15.1%} | {flags}")


if __name__ == "__main__":
    main()
