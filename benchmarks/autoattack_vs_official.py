"""robustkit's ``autoattack`` (standard version) vs the official AutoAttack package, with ``ensemble`` beside them.

Same model, same images, same ε. Robust accuracy is a fraction of all the images: for robustkit through
the evaluation engine (every example verified; unverified ones are counted and printed), for the
official package re-scored here (misclassified and within ε, rounding tolerance aside). Models: smallcnn
with standard training and with Madry adversarial training, loaded from $ROBUSTKIT_HOME's checkpoints
(trained there first if missing: ``robustkit train --model smallcnn [--defense madry]``), or --checkpoints.
Below the table, per model, the per-member profile of both packages (``pass_profile``): passes of the
model (counted by a wrapper both packages call), seconds, and the floor (those passes timed bare).

    python benchmarks/autoattack_vs_official.py [--n 500] [--norm linf] [--eps 0.1] [--threads 1]
        [--checkpoints smallcnn=PATH,smallcnn+madry=PATH] [--no-ensemble]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from unittest import mock

import torch
from torch import nn

from attacks import AutoAttack, Ensemble
from attacks.autoattack import VERSIONS
from benchmarks.pass_profile import Counted, budget_floor, profile
from robustkit.data import get_dataset
from robustkit.data.base import Split
from robustkit.evaluation.engine import evaluate_attack
from robustkit.registry import DEFENSES
from robustkit.weights.cache import cache_path
from robustkit.weights.checkpoint import load_model
from robustkit.weights.resolve import resolve_model

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


def ours(model: Counted, x, y, norm: str, eps: float):
    """robustkit's ``autoattack`` through the engine, each member's passes and seconds counted; and its CPU
    seconds."""
    attack = AutoAttack(eps=eps, norm=norm)
    members = [(name, model.timed(name, member)) for name, member in VERSIONS[attack.version](attack)]
    cpu = time.process_time()
    with mock.patch.object(AutoAttack, "members", lambda self: members):
        result = evaluate_attack(model, Split(x, y), attack, batch_size=len(x), progress=False)
    cpu = time.process_time() - cpu
    model.seconds["other"] = result.seconds - sum(model.seconds.values())
    return result, cpu


def official(model: Counted, x, y, norm: str, eps: float) -> tuple[float, float, float]:
    """The official package's robust accuracy (re-scored here), wall seconds and CPU seconds."""
    from pyautoattack import AutoAttack as OfficialAutoAttack

    start, cpu = time.perf_counter(), time.process_time()
    aa = OfficialAutoAttack(model, eps=eps, norm=_OFFICIAL_NORM[norm], seed=0, version="standard", device="cpu")
    for name, member in [("apgd-ce", aa.apgd), ("apgd-t", aa.apgd_targeted), ("fab-t", aa.fab), ("square", aa.square)]:
        member.perturb = model.timed(name, member.perturb)
    adv, _ = aa.run_standard_evaluation(x, y, batch_size=len(x))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    model.seconds["other"] = seconds - sum(model.seconds.values())
    with torch.no_grad():
        wrong = model(adv).argmax(1) != y
    size = {"linf": lambda d: d.abs().amax(1), "l2": lambda d: d.norm(dim=1), "l1": lambda d: d.abs().sum(1)}[norm]
    within = size((adv - x).flatten(1)) <= eps * (1 + 1e-5)
    return 1 - (wrong & within).float().mean().item(), seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--norm", default="linf", choices=sorted(_OFFICIAL_NORM))
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--models", default="smallcnn,smallcnn+madry")
    parser.add_argument("--checkpoints", default="", help="spec=path,… (e.g. smallcnn+madry=/tmp/m.safetensors)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-ensemble", action="store_true", help="leave robustkit's ensemble out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    checkpoints = dict(item.split("=", 1) for item in args.checkpoints.split(",") if item)
    data = get_dataset("fashion-mnist")
    test = data.test.subset(args.n, seed=0).load()
    x, y = test.images, test.labels
    print(
        f"Fashion-MNIST, {args.n} test images, {args.norm} ε = {args.eps}, {args.threads} CPU thread(s); "
        f"robust accuracy as a fraction of all the images; load average {_load()}\n"
    )
    print(
        "| model | clean | robustkit autoattack | official AutoAttack | robustkit ensemble | autoattack s "
        "| official s | ensemble s | autoattack / official | autoattack / official, CPU time | unverified |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    profiles = []
    for spec in args.models.split(","):
        model = load(spec, data, args.eps, args.norm, checkpoints)
        for p in model.parameters():
            p.requires_grad_(False)  # the official package must not accumulate parameter grads either
        ours_counted, theirs_counted = Counted(model), Counted(model)
        mine, mine_cpu = ours(ours_counted, x, y, args.norm, args.eps)
        theirs, theirs_s, theirs_cpu = official(theirs_counted, x, y, args.norm, args.eps)
        fast = (
            None
            if args.no_ensemble
            else evaluate_attack(
                model, Split(x, y), Ensemble(eps=args.eps, norm=args.norm), batch_size=len(x), progress=False
            )
        )
        fast_ra, fast_s = ("–", "–") if fast is None else (f"{fast.robust_accuracy:.4f}", f"{fast.seconds:.1f}")
        print(
            f"| {spec} | {mine.clean_accuracy:.4f} | {mine.robust_accuracy:.4f} | {theirs:.4f} | {fast_ra} | "
            f"{mine.seconds:.1f} | {theirs_s:.1f} | {fast_s} | {mine.seconds / theirs_s:.2f}× | {mine_cpu / theirs_cpu:.2f}× | "
            f"{mine.n_unverified + (fast.n_unverified if fast else 0)} |",
            flush=True,
        )
        robust = round(mine.robust_accuracy * len(x))
        profiles.append(
            (
                spec,
                [("robustkit", ours_counted), ("official", theirs_counted)],
                robust,
                theirs_s,
                budget_floor(model, tuple(x.shape[1:]), robust),
            )
        )
    print(
        "\nPer member: passes of the model (calls, with an input backward, images), seconds, and the floor "
        "(the same passes timed bare)\n"
    )
    print("| model | package | member | passes | backward | image-passes | s | floor s | s / floor |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for spec, counted, *_ in profiles:
        for package, c in counted:
            for row in profile(c, tuple(x.shape[1:])):
                print(
                    f"| {spec} | {package} | {row.phase} | {row.forwards} | {row.backwards} | {row.image_passes} | "
                    f"{row.seconds:.1f} | {row.floor:.1f} | {row.seconds / max(row.floor, 1e-9):.2f} |",
                    flush=True,
                )
    print(
        "\nThe budget's floor: every member's whole standard budget on the samples that stay robust, as bare "
        "passes in one batch (no evaluation of the standard version can spend less)\n"
    )
    print(
        "| model | robust samples | apgd-ce s | apgd-t s | fab-t s | square s | floor s | official s | floor / official |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for spec, _, robust, theirs_s, floor in profiles:
        total = sum(floor.values())
        print(
            f"| {spec} | {robust} | {floor['apgd-ce']:.1f} | {floor['apgd-t']:.1f} | {floor['fab-t']:.1f} | "
            f"{floor['square']:.1f} | {total:.1f} | {theirs_s:.1f} | {total / theirs_s:.2f} |",
            flush=True,
        )
    print(f"\nload average at the end {_load()} (on a loaded machine the CPU-time ratio is the steadier one)")


def _load() -> str:
    """The 1, 5 and 15 minute load averages: how shared the machine was while the figures were taken."""
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
