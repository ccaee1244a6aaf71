"""robustkit's ``autoattack`` (standard version) vs the official AutoAttack package, with ``ensemble`` beside them.

Same model, same images, same ε. Robust accuracy is a fraction of all the images: for robustkit through
the evaluation engine (every example verified; unverified ones are counted and printed), for the
official package re-scored here (misclassified and within ε, rounding tolerance aside). Models: smallcnn
with standard training and with Madry adversarial training, loaded from $ROBUSTKIT_HOME's checkpoints
(trained there first if missing: ``robustkit train --model smallcnn [--defense madry]``), or --checkpoints.

    python benchmarks/autoattack_vs_official.py [--n 500] [--norm linf] [--eps 0.1] [--threads 1]
        [--checkpoints smallcnn=PATH,smallcnn+madry=PATH]
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
from torch import nn

from attacks import AutoAttack, Ensemble
from robustkit.weights.checkpoint import load_model
from robustkit.data import get_dataset
from robustkit.evaluation.engine import evaluate_attack
from robustkit.data.base import Split
from robustkit.weights.cache import cache_path
from robustkit.weights.resolve import resolve_model
from robustkit.registry import DEFENSES

_OFFICIAL_NORM = {"linf": "Linf", "l2": "L2", "l1": "L1"}


def load(spec: str, data, eps: float, norm: str, checkpoints: dict[str, str]) -> nn.Module:
    """``smallcnn`` or ``smallcnn+madry``: a given checkpoint, else the cached one (trained if missing)."""
    name, _, defense_name = spec.partition("+")
    if spec in checkpoints:
        return load_model(checkpoints[spec], model=name, device="cpu")[0].eval()
    defense = DEFENSES.build(defense_name, eps=0.1) if defense_name else None
    if defense is not None and cache_path(data, name, defense).is_file():
        return load_model(cache_path(data, name, defense), model=name, device="cpu")[0].eval()
    return resolve_model(name, data, defense=defense, device=torch.device("cpu")).model.eval()


def official(model: nn.Module, x, y, norm: str, eps: float) -> tuple[float, float]:
    from pyautoattack import AutoAttack as OfficialAutoAttack

    start = time.perf_counter()
    adv, _ = OfficialAutoAttack(model, eps=eps, norm=_OFFICIAL_NORM[norm], seed=0, version="standard",
                                device="cpu").run_standard_evaluation(x, y, batch_size=len(x))  # fmt: skip
    seconds = time.perf_counter() - start
    with torch.no_grad():
        wrong = model(adv).argmax(1) != y
    size = {"linf": lambda d: d.abs().amax(1), "l2": lambda d: d.norm(dim=1), "l1": lambda d: d.abs().sum(1)}[norm]
    within = size((adv - x).flatten(1)) <= eps * (1 + 1e-5)
    return 1 - (wrong & within).float().mean().item(), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--norm", default="linf", choices=sorted(_OFFICIAL_NORM))
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--models", default="smallcnn,smallcnn+madry")
    parser.add_argument("--checkpoints", default="", help="spec=path,… (e.g. smallcnn+madry=/tmp/m.safetensors)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    checkpoints = dict(item.split("=", 1) for item in args.checkpoints.split(",") if item)
    data = get_dataset("fashion-mnist")
    test = data.test.subset(args.n, seed=0).load()
    x, y = test.images, test.labels
    print(f"Fashion-MNIST, {args.n} test images, {args.norm} ε = {args.eps}, {args.threads} CPU thread(s); "
          "robust accuracy as a fraction of all the images\n")
    print("| model | clean | robustkit autoattack | official AutoAttack | robustkit ensemble | autoattack s "
          "| official s | ensemble s | official / autoattack | unverified |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for spec in args.models.split(","):
        model = load(spec, data, args.eps, args.norm, checkpoints)
        for p in model.parameters():
            p.requires_grad_(False)  # the official package must not accumulate parameter grads either
        ours = evaluate_attack(model, Split(x, y), AutoAttack(eps=args.eps, norm=args.norm), batch_size=len(x), progress=False)
        theirs, theirs_s = official(model, x, y, args.norm, args.eps)
        fast = evaluate_attack(model, Split(x, y), Ensemble(eps=args.eps, norm=args.norm), batch_size=len(x), progress=False)
        print(f"| {spec} | {ours.clean_accuracy:.4f} | {ours.robust_accuracy:.4f} | {theirs:.4f} | "
              f"{fast.robust_accuracy:.4f} | {ours.seconds:.1f} | {theirs_s:.1f} | {fast.seconds:.1f} | "
              f"{theirs_s / ours.seconds:.2f}× | {ours.n_unverified + fast.n_unverified} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
