"""Fooling images: seconds per class to reach the confidence threshold on Fashion-MNIST smallcnn (standard training).

One image sought per class, all ten classes in one batch, for the gradient method (white box) and the
evolution method (black box, probabilities only); every image is confirmed by a fresh float32 pass.
The model comes from the project's checkpoint cache (trained with the default recipe if missing).

    python benchmarks/fooling_speed.py [--threshold 0.99] [--seeds 3] [--threads 2]

"s/class" is the run's wall time over the classes sought (the mean of the per-class times); "median
s/fooled class" is, over the classes that passed, the median of each one's own time (its share of the
batched steps it was in, and of the verification); "passes" the model passes per class.
"""

from __future__ import annotations

import argparse
import logging
import statistics

import torch

from attacks import Fooling
from robustkit.data import get_dataset
from robustkit.evaluation.fooling import evaluate_fooling
from robustkit.weights.resolve import resolve_model

METHODS = {
    "gradient": {},
    "gradient+priors": {"blur": 0.5, "jitter": 1},
    "evolution": {"method": "evolution"},
    "evolution (1000 gen.)": {"method": "evolution", "steps": 1000},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=0.99)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    data = get_dataset("fashion-mnist")
    model = resolve_model("smallcnn", data, defense=None, device=torch.device("cpu")).model
    shape = tuple(data.info.input_shape)
    print(f"| method | fooling rate (p ≥ {args.threshold:g}) | s/class | median s/fooled class | median passes/class |")
    print("|---|---:|---:|---:|---:|")
    for name, settings in METHODS.items():
        rates, per_class, found, passes = [], [], [], []
        for seed in range(args.seeds):
            attack = Fooling(eps=args.threshold, seed=seed, **settings)
            report = evaluate_fooling(model, attack, shape, progress=False)
            result = attack(model, torch.full((10, *shape), 0.5), torch.arange(10), index=torch.arange(10))
            rates.append(report.fooling_rate)
            per_class.append(report.seconds_per_class)
            found += report.seconds[report.passed].tolist()
            passes += result.queries.tolist()
        median = statistics.median(found) if found else float("nan")
        print(
            f"| {name} | {statistics.mean(rates):.2f} | {statistics.mean(per_class):.3f} | {median:.3f} | "
            f"{statistics.median(passes):.0f} |"
        )


if __name__ == "__main__":
    main()
