"""Cost of the default gradient-masking checks against the attack's own time (target: ≤ 15 %).

``robustkit evaluate`` runs the cheap checks after every attack; this measures them side by side with
the attack they follow: PGD with its defaults on the first ``--n`` Fashion-MNIST test images, per
model entry, the same ``evaluate_model`` call a user makes, in this process. Attack seconds are the
cell's (clean pass, attack, verification); check seconds are the check run's. Each (entry, threads,
n) runs ``--repeats`` times, interleaved with nothing else; the table gives the medians and the median
of the per-run ratios (each run's two times are taken back to back, so a busy machine slows both).
Entries are trained into $ROBUSTKIT_HOME if missing (``--no-train`` refuses). The flags column shows
what each entry raised (masked defenses should raise some, the standard and Madry models none).

    python benchmarks/default_checks_cost.py [--n 200 300 1000] [--threads 1 2] [--repeats 3]
                                             [--entries smallcnn:none lenet5:none smallcnn:bit-depth]
"""

from __future__ import annotations

import argparse
import logging
import statistics

import torch

from robustkit import evaluate_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[200, 300, 1000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--entries", nargs="+", default=["smallcnn:none", "lenet5:none"], help="MODEL:DEFENSE pairs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-train", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"PGD defaults on the first n Fashion-MNIST test images, default checks, median of {args.repeats}\n")
    print(f"| {'entry':<20} | threads |    n | attack s | checks s | checks / attack | flags")
    print("|" + "-" * 22 + "|--------:|-----:|---------:|---------:|----------------:|------")
    for spec in args.entries:
        model, _, defense = spec.partition(":")
        for threads in args.threads:
            torch.set_num_threads(threads)
            for n in args.n:
                runs = [_run(model, defense or "none", n, args) for _ in range(args.repeats)]
                attack, checks = (statistics.median(r[i] for r in runs) for i in (0, 1))
                ratio = statistics.median(r[1] / r[0] for r in runs)
                print(
                    f"| {spec:<20} | {threads:7d} | {n:4d} | {attack:8.2f} | {checks:8.3f} | {ratio:15.1%} | {runs[-1][2]}"
                )


def _run(model: str, defense: str, n: int, args: argparse.Namespace) -> tuple[float, float, str]:
    """One evaluation: the attack's seconds, the checks' seconds, the flags raised."""
    torch.manual_seed(0)
    report = evaluate_model(
        model,
        "fashion-mnist",
        "pgd",
        n_samples=n,
        defense=defense,
        checks="default",
        device=args.device,
        no_train=args.no_train,
        progress=False,
    )
    return report.record["seconds"], report.check_record["seconds"], report.checks.summary()


if __name__ == "__main__":
    main()
