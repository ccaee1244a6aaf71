"""Minimum-norm attacks: robustkit FMN and CW vs torchattacks CW/FAB and Foolbox FMN, and the ε-curve from
one FMN run vs a sweep of PGD runs at 8 values of ε.

Same model (the cached standard smallcnn on Fashion-MNIST; trained if missing), the same seeded
subset. Table 1: per attack, the share of correctly classified images it broke and the median verified
norm over them (∞ counted for those it did not break, so a weak attack cannot look small by breaking
only easy images), and seconds. Every peer's output is re-scored here by one fresh forward pass and
measured here; robustkit's come from the engine (``evaluate_attack``: verified, its own norms).
Table 2: robust accuracy at each ε from one FMN run (``Evaluation.curve``) beside one PGD run per ε,
and the time of each way. Peers that are not installed are skipped, with the reason.

    OMP_NUM_THREADS=1 python benchmarks/min_norm.py [--n 200] [--threads 1] [--defense madry]

Settings: robustkit's defaults (FMN 100 steps; CW 5 × 100 Adam steps, lr 0.05); torchattacks CW its
defaults (c = 1, 50 steps, lr 0.01, no search over c); torchattacks FAB its defaults (10 steps) with ε the whole
box, so its answer is its smallest example (it keeps only examples within ε); Foolbox FMN its defaults
(100 steps). PGD in the sweep: 20 steps, robustkit's defaults otherwise. robustkit FAB: its minimum-norm mode
(``minimize=True``, 100 steps, untargeted). ``--defense madry`` runs it all on the Madry-trained smallcnn.

Time of table 2: PGD stops on an image once it is fooled, so on an undefended model most of the 8
runs end after a few steps and the sweep costs about one FMN run (measured: 20 s vs 26 s at 200
images); FMN's 100 steps do not shrink, so the one run pays off on models where PGD runs its steps.
"""

from __future__ import annotations

import argparse
import time

import torch

from attacks import CW, FAB, FMN, PGD
from robustkit.data import get_dataset
from robustkit.evaluation.engine import evaluate_attack
from robustkit.predict import predict
from robustkit.registry import DEFENSES
from robustkit.weights.resolve import resolve_model

CURVE = [
    0.01,
    0.02,
    0.03,
    0.05,
    0.07,
    0.1,
    0.15,
    0.2,
]  # L∞ budgets of the PGD sweep (Fashion-MNIST's usual 0.1 among them)
_P = {"linf": float("inf"), "l2": 2.0}


def median_with_misses(norms: torch.Tensor) -> float:
    """Median over the attacked images, an image the attack did not break counting as ∞."""
    return torch.where(norms.isnan(), torch.full_like(norms, float("inf")), norms).median().item()


def ours(model, subset, attack):
    evaluation = evaluate_attack(model, subset, attack, progress=False)
    attacked = evaluation.norms[evaluation.clean_correct]
    return attacked, evaluation.seconds, evaluation


def peer(model, x, y, norm, run):
    start = time.perf_counter()
    adv = run().detach()
    seconds = time.perf_counter() - start
    broken = predict(model, adv) != y
    norms = (adv - x).flatten(1).norm(p=_P[norm], dim=1)
    return torch.where(broken, norms, torch.full_like(norms, float("nan"))), seconds


def peers(model, x, y):
    """(label, norm, thunk) for each peer attack; a missing library gives its reason instead of a thunk."""
    rows = []
    try:
        import torchattacks

        rows += [
            ("torchattacks CW", "l2", lambda: torchattacks.CW(model, c=1, kappa=0, steps=50, lr=0.01)(x, y)),
            ("torchattacks FAB", "linf", lambda: torchattacks.FAB(model, norm="Linf", eps=1.0, n_classes=10)(x, y)),
            ("torchattacks FAB", "l2", lambda: torchattacks.FAB(model, norm="L2", eps=28.0, n_classes=10)(x, y)),
        ]
    except ImportError:
        rows.append(("torchattacks", None, "not installed: pip install torchattacks"))
    try:
        import foolbox

        wrapped = foolbox.PyTorchModel(model, bounds=(0, 1))
        for norm, cls in (("linf", foolbox.attacks.LInfFMNAttack), ("l2", foolbox.attacks.L2FMNAttack)):
            rows.append(("Foolbox FMN", norm, lambda cls=cls: cls()(wrapped, x, y, epsilons=None)[1]))
    except ImportError:
        rows.append(("Foolbox", None, "not installed: pip install foolbox"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="test images (the seeded subset)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--defense", default="none", help="the smallcnn entry's defense (madry: PGD runs all its steps)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = get_dataset("fashion-mnist")
    defense = None if args.defense == "none" else DEFENSES.build(args.defense, eps=0.1)
    model = resolve_model("smallcnn", data, defense=defense, device=torch.device("cpu")).model
    model.eval()
    subset = data.test.subset(args.n, seed=0)
    loaded = subset.load()
    keep = predict(model, loaded.images) == loaded.labels
    x, y = loaded.images[keep], loaded.labels[keep]
    print(
        f"smallcnn ({args.defense}) on Fashion-MNIST: {args.n} test images, {len(y)} classified correctly (attacked); {args.threads} thread(s)"
    )
    print(f"{'attack':<22} {'norm':<5} {'broken':>7} {'median norm':>12} {'seconds':>8}")
    mine = [
        ("robustkit FMN", FMN(eps=0.1)),
        ("robustkit FMN", FMN(eps=1.5, norm="l2")),
        ("robustkit CW", CW(eps=1.5)),
        ("robustkit FAB", FAB(eps=0.1, minimize=True)),
        ("robustkit FAB", FAB(eps=1.5, norm="l2", minimize=True)),
    ]
    one_run = None
    for label, attack in mine:
        norms, seconds, evaluation = ours(model, subset, attack)
        one_run = one_run or (evaluation, seconds)  # the first, FMN L∞, gives table 2's curve
        print(
            f"{label:<22} {attack.norm:<5} {(~norms.isnan()).float().mean():>7.3f} {median_with_misses(norms):>12.4f} {seconds:>8.1f}"
        )
    for label, norm, run in peers(model, x, y):
        if norm is None:
            print(f"{label:<22} skipped ({run})")
            continue
        norms, seconds = peer(model, x, y, norm, run)
        print(
            f"{label:<22} {norm:<5} {(~norms.isnan()).float().mean():>7.3f} {median_with_misses(norms):>12.4f} {seconds:>8.1f}"
        )

    evaluation, fmn_seconds = one_run
    curve = evaluation.curve(CURVE)
    swept, sweep_seconds = [], 0.0
    for eps in CURVE:
        result = evaluate_attack(model, subset, PGD(eps=eps, steps=20), progress=False)
        swept.append(result.robust_accuracy)
        sweep_seconds += result.seconds
    print(
        f"\nL∞ robust accuracy vs ε: one FMN run ({fmn_seconds:.1f} s) vs {len(CURVE)} PGD-20 runs ({sweep_seconds:.1f} s, "
        f"{sweep_seconds / fmn_seconds:.1f}× the time)"
    )
    print(f"{'ε':>6} {'FMN (one run)':>14} {'PGD-20 at ε':>12} {'difference':>11}")
    for eps, a, b in zip(CURVE, curve, swept, strict=True):
        print(f"{eps:>6.3g} {a:>14.3f} {b:>12.3f} {a - b:>+11.3f}")


if __name__ == "__main__":
    main()
