"""Universal perturbations: robustkit vs IBM ART ``UniversalPerturbation`` (attacker deepfool and fgsm).

Same model, same fitting images (a seeded subset of the training split), same ε and norm, same pass
limit and fooling goal. Each δ is re-scored here, not by the tool: projected check of its norm, then
the fooling rate (prediction of clip(x + δ, 0, 1) differs from the clean one) on held-out test images.

    python benchmarks/universal_speed.py [--fit 1000] [--test 2000] [--eps 0.1] [--norm linf] [--passes 5]
"""

from __future__ import annotations

import argparse
import logging
import random
import time

import numpy as np
import torch
from torch import nn

from attacks import Universal
from attacks.universal import fooling_rate
from robustkit.data import get_dataset
from robustkit.threats import threat_model
from robustkit.weights.resolve import resolve_model


def robustkit_run(method: str, **settings):
    def run(model, x, args):
        attack = Universal(
            eps=args.eps,
            norm=args.norm,
            method=method,
            fooling_goal=args.goal,
            max_passes=args.passes,
            seed=0,
            **settings,
        )
        return attack.fit(model, x, progress=False)

    return run


def art_run(attacker: str):
    def run(model, x, args):
        from art.attacks.evasion import UniversalPerturbation
        from art.estimators.classification import PyTorchClassifier

        classifier = PyTorchClassifier(
            model,
            loss=nn.CrossEntropyLoss(),
            input_shape=tuple(x.shape[1:]),
            nb_classes=10,
            clip_values=(0.0, 1.0),
            device_type="cpu",
        )
        # ART's FGSM steps by its own eps (default 0.3); give it the budget, as a user would
        params = (
            {"eps": args.eps, "norm": np.inf if args.norm == "linf" else 2}
            if attacker == "fgsm"
            else {"verbose": False}
        )
        attack = UniversalPerturbation(
            classifier,
            attacker=attacker,
            attacker_params=params,
            delta=1 - args.goal,
            max_iter=args.passes,
            eps=args.eps,
            norm=np.inf if args.norm == "linf" else 2,
            verbose=False,
        )
        random.seed(0)  # ART shuffles with the global RNG
        attack.generate(x.numpy())
        return torch.from_numpy(attack.noise[0])

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--fit", type=int, default=1000, help="fitting images (training split)")
    parser.add_argument("--test", type=int, default=2000, help="held-out images (test split)")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--norm", choices=["linf", "l2"], default="linf")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--goal", type=float, default=0.8, help="stop once this fitting fooling rate is reached")
    parser.add_argument("--skip-art-deepfool", action="store_true", help="ART's per-image DeepFool is the slow one")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    data = get_dataset("fashion-mnist")
    model = resolve_model(args.model, data, defense=None, device=torch.device("cpu")).model
    x_fit = data.train.subset(args.fit, seed=0).images
    x_test = data.test.subset(args.test, seed=0).images
    threat = threat_model(args.norm, args.eps)
    print(
        f"{args.model}, fashion-mnist, fit on {len(x_fit)} training images, held-out {len(x_test)} test images, "
        f"{args.norm} ε={args.eps:g}, ≤{args.passes} passes, goal {args.goal:g}, {torch.get_num_threads()} threads"
    )
    runs = [
        ("robustkit universal, deepfool", robustkit_run("deepfool")),
        ("robustkit universal, sgd", robustkit_run("sgd")),
        ("robustkit universal, sgd, bf16", robustkit_run("sgd", precision="bf16")),
        ("ART UniversalPerturbation, fgsm", art_run("fgsm")),
        ("ART UniversalPerturbation, deepfool", art_run("deepfool")),
    ]
    if args.skip_art_deepfool:
        runs = runs[:-1]
    print(f"{'method':<36} {'seconds':>8} {'fit fooling':>12} {'held-out fooling':>17} {'‖δ‖':>7}", flush=True)
    rows = []
    for label, run in runs:
        start = time.perf_counter()
        try:
            delta = run(model, x_fit.clone(), args).float()
        except ImportError as err:
            print(f"{label:<36} skipped ({err.name} not installed)")
            continue
        seconds = time.perf_counter() - start
        inside = bool(threat.contains(torch.zeros_like(delta[None]), delta[None]))
        held_out = fooling_rate(model, x_test, delta) if inside else float("nan")
        rows.append((label, seconds, held_out))
        print(
            f"{label:<36} {seconds:>8.1f} {fooling_rate(model, x_fit, delta):>12.3f} {held_out:>17.3f} "
            f"{threat.norm(delta[None]).item():>7.4g}",
            flush=True,
        )
    ours = [r for r in rows if r[0].startswith("robustkit")]
    for label, seconds, held_out in (r for r in rows if r[0].startswith("ART")):
        for own, own_seconds, own_rate in ours:
            verdict = "≥" if own_rate >= held_out else "<"
            print(
                f"{own} vs {label}: {seconds / own_seconds:.1f}× faster, held-out fooling {own_rate:.3f} {verdict} {held_out:.3f}"
            )


if __name__ == "__main__":
    main()
