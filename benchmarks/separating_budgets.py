"""Which budgets of a threat model separate the models: robust accuracy per model and budget, and the spread.

A leaderboard column is worth its width only where models differ: at ±30° and ±3 px every Fashion-MNIST
model's spatial robust accuracy was 0.000–0.026. This prints, for the spatial threat model (Engstrom
et al.: the worst of a grid of rotations × translations) and the per-image patch (side s), each
model's robust accuracy at each budget, and the spread (best − worst model) that says whether a
column would separate them. Uses the cached checkpoints (trains a missing one).

    python benchmarks/separating_budgets.py [--entries smallcnn:none,lenet5:none,smallcnn:madry] [--n-samples 500]
"""

from __future__ import annotations

import argparse
import logging

from robustkit import evaluate_model

# (attack, ε, settings): ε is the largest rotation in degrees (spatial) or the patch side in pixels (patch)
SPATIAL = [
    ("spatial", angle, {"translation": shift, "translations": 2 * int(shift) + 1})
    for angle, shift in ((5, 0), (10, 0), (15, 0), (10, 1), (15, 2), (30, 3))
]
PATCH = [("patch", side, {"locations": 4}) for side in (4, 6, 8)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", default="smallcnn:none,lenet5:none,smallcnn:madry,lenet5:madry")
    parser.add_argument("--n-samples", type=int, default=500)
    parser.add_argument("--threats", default="spatial,patch")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    entries = [tuple(e.split(":")) for e in args.entries.split(",")]
    budgets = [b for name in args.threats.split(",") for b in {"spatial": SPATIAL, "patch": PATCH}[name]]
    print(
        f"{'budget':<34}" + "".join(f"{m + '+' + d if d != 'none' else m:>16}" for m, d in entries) + f"{'spread':>8}"
    )
    for attack, eps, settings in budgets:
        figures = []
        for model, defense in entries:
            report = evaluate_model(
                model,
                "fashion-mnist",
                attack,
                norm=attack,
                eps=eps,
                n_samples=args.n_samples,
                defense=defense,
                defense_eps=None if defense == "none" else 0.1,
                attack_settings=settings,
                checks=False,
                progress=False,
            )
            figures.append(report.robust_accuracy)
        label = f"{attack} ε={eps} " + " ".join(f"{k}={v}" for k, v in settings.items())
        print(
            f"{label:<34}" + "".join(f"{f:>16.3f}" for f in figures) + f"{max(figures) - min(figures):>8.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
