"""Strength and cost of robustkit's reliable ensemble vs AutoAttack (standard, as shipped in torchattacks).

Same models, same images, same ε. Every attack's output is re-scored by one verifier here (inside the
ε-ball, inside [0, 1], misclassified by a fresh forward pass), and PGD-20 is printed beside both as the
figure a quick evaluation would have reported. Models: the cached standard smallcnn and lenet5, an
adversarially trained smallcnn (FGSM-RS "fast" training, trained and cached on first use) and a
gradient-masking one (smallcnn behind bit-depth reduction, which only Square gets through).

The ensemble runs twice at fp32: with its default Square patience (stop after 1000 queries in a row
fool nothing) and with the full budget (patience 0, as AutoAttack spends it), to show what patience
saves and that it loses nothing; then with patience under bf16 autocast.

``--fast`` prints another table instead: the official AutoAttack package (standard version, device cpu)
against ``fast-ensemble``, the fast reliable figure, with the seconds of each run side by side in one
process, their ratio (of wall time, and of CPU time, steadier on a shared machine), the paired difference
(images robust under one and broken by the other) and the unverified count: examples an attack claimed
(the official package by its own predicted labels, fast-ensemble by its result) that the engine's check rejects.
``--checkpoints`` names a checkpoint per model (e.g. ``smallcnn+madry=PATH``).

    python benchmarks/ensemble_vs_autoattack.py [--n 200] [--eps 0.1] [--models smallcnn,smallcnn+fast,...]
    python benchmarks/ensemble_vs_autoattack.py --fast --n 500 --threads 1 --models smallcnn,smallcnn+madry
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn

from attacks import PGD, Ensemble, FastEnsemble
from robustkit.data import get_dataset
from robustkit.evaluation.engine import verify
from robustkit.predict import predict
from robustkit.registry import DEFENSES
from robustkit.weights.cache import cache_path, train_and_save
from robustkit.weights.checkpoint import load_model
from robustkit.weights.resolve import resolve_model


def load(spec: str, data, eps: float, checkpoints: dict[str, str] | None = None) -> nn.Module:
    """``smallcnn`` (cached standard training), ``smallcnn+fast`` (FGSM-RS training, 5 epochs, cached)
    or ``smallcnn+bit-depth`` (an input-transform defense around the standard model); a spec named in
    ``checkpoints`` loads that file instead."""
    name, _, defense_name = spec.partition("+")
    device = torch.device("cpu")
    if spec in (checkpoints or {}):
        return load_model(checkpoints[spec], model=name, device=device)[0].eval()
    if not defense_name:
        return resolve_model(name, data, defense=None, device=device).model
    defense = DEFENSES.build(defense_name, eps=eps)
    if not defense.trains_weights:
        return resolve_model(name, data, defense=defense, device=device).model
    path = cache_path(data, name, defense)
    if path.is_file():
        return load_model(path, model=name, device=device)[0].eval()
    return train_and_save(name, data, device=device, defense=defense, epochs=5)[0].eval()


def verified_robust(model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor, eps: float) -> Tensor:
    """Not broken by a verified example: the engine's own check (ε-ball, [0, 1], fresh forward pass)."""
    return ~verify(model, PGD(eps=eps), x, x_adv, y)


def run(name: str, attack, model, x, y, eps) -> tuple[float, float]:
    start = time.perf_counter()
    x_adv = attack(model, x, y)
    seconds = time.perf_counter() - start
    return verified_robust(model, x, x_adv, y, eps).float().mean().item(), seconds


def official(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """The official AutoAttack package's adversarial examples (standard version, L∞, device cpu) and the labels
    it predicted for them (its own claim of which it broke)."""
    import logging

    from pyautoattack import AutoAttack as OfficialAutoAttack

    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    attack = OfficialAutoAttack(model, eps=eps, norm="Linf", seed=0, version="standard", device="cpu")
    return attack.run_standard_evaluation(x, y, batch_size=len(x))


def fast_table(args, data, test) -> None:
    """Official AutoAttack against ``fast-ensemble`` on the same images, one after the other per model."""
    print(
        "| model | clean | official AA | fast-ensemble | fast − AA (pp) | robust only under fast | "
        "robust only under AA | unverified AA, fast | AA s | fast s | fast / AA | fast / AA, CPU time |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    checkpoints = dict(item.split("=", 1) for item in args.checkpoints.split(",") if item)
    x, y = test.images, test.labels
    for spec in args.models.split(","):
        model = load(spec, data, args.eps, checkpoints)
        for p in model.parameters():
            p.requires_grad_(False)  # the official package must not accumulate parameter grads either
        clean = (predict(model, x) == y).float().mean().item()
        start, cpu = time.perf_counter(), time.process_time()
        x_adv, y_adv = official(model, x, y, args.eps)
        theirs = verified_robust(model, x, x_adv, y, args.eps)
        theirs_s, theirs_cpu = time.perf_counter() - start, time.process_time() - cpu
        start, cpu = time.perf_counter(), time.process_time()
        result = FastEnsemble(eps=args.eps)(model, x, y)
        ours = verified_robust(model, x, result.x_adv, y, args.eps)
        ours_s, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
        # claimed broken by the attack's own account, yet robust under the engine's check
        unverified = ((y_adv != y) & theirs).sum().item(), (result.success & ours).sum().item()
        ours_only, theirs_only = (ours & ~theirs).sum().item(), (theirs & ~ours).sum().item()
        print(
            f"| {spec} | {clean:.4f} | {theirs.float().mean():.4f} | {ours.float().mean():.4f} | "
            f"{100 * (ours.float().mean() - theirs.float().mean()):+.1f} | {ours_only} | {theirs_only} | "
            f"{unverified[0]}, {unverified[1]} | {theirs_s:.1f} | {ours_s:.1f} | {ours_s / theirs_s:.3f}× | {ours_cpu / theirs_cpu:.3f}× |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--models", default="smallcnn,lenet5,smallcnn+bit-depth,smallcnn+fast")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fast", action="store_true", help="official AutoAttack vs fast-ensemble instead")
    parser.add_argument("--checkpoints", default="", help="spec=path,… (e.g. smallcnn+madry=/tmp/m.safetensors)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import torchattacks

    data = get_dataset("fashion-mnist")
    test = data.test.subset(args.n, seed=0)
    print(
        f"Fashion-MNIST, {args.n} test images, L∞ ε = {args.eps}, {args.threads} CPU threads; "
        "robust accuracy as a fraction of all the images\n"
    )
    if args.fast:
        return fast_table(args, data, test.load())
    print(
        "| model | clean | PGD-20 | AutoAttack | ensemble | ensemble, full budget | ensemble bf16 "
        "| AutoAttack s | ensemble s | full budget s | bf16 s | AA / ensemble | AA / bf16 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for spec in args.models.split(","):
        model = load(spec, data, args.eps)
        for p in model.parameters():
            p.requires_grad_(False)  # torchattacks must not accumulate parameter grads either
        correct = predict(model, test.images) == test.labels
        x, y = test.images, test.labels
        clean = correct.float().mean().item()
        # every attack runs on the correctly classified samples only (AutoAttack does this itself)
        xs, ys = x[correct], y[correct]
        scale = correct.float().mean().item()

        def ours(m, a, b, attack=Ensemble(eps=args.eps)):
            return attack(m, a, b).x_adv

        def ours_full(m, a, b, attack=Ensemble(eps=args.eps, patience=0)):
            return attack(m, a, b).x_adv

        def ours_bf16(m, a, b, attack=Ensemble(eps=args.eps, precision="bf16")):
            return attack(m, a, b).x_adv  # bf16 autocast passes; every success re-checked in float32

        def pgd20(m, a, b):
            return PGD(eps=args.eps, steps=20)(m, a, b).x_adv

        def autoattack(m, a, b):
            return torchattacks.AutoAttack(m, norm="Linf", eps=args.eps, version="standard", n_classes=10, seed=0)(a, b)

        pgd_acc, _ = run("pgd", pgd20, model, xs, ys, args.eps)
        aa_acc, aa_s = run("aa", autoattack, model, xs, ys, args.eps)
        ens_acc, ens_s = run("ensemble", ours, model, xs, ys, args.eps)
        full_acc, full_s = run("ensemble, full budget", ours_full, model, xs, ys, args.eps)
        bf_acc, bf_s = run("ensemble bf16", ours_bf16, model, xs, ys, args.eps)
        print(
            f"| {spec} | {clean:.4f} | {pgd_acc * scale:.4f} | {aa_acc * scale:.4f} | {ens_acc * scale:.4f} | "
            f"{full_acc * scale:.4f} | {bf_acc * scale:.4f} | {aa_s:.1f} | {ens_s:.1f} | {full_s:.1f} | {bf_s:.1f} | "
            f"{aa_s / ens_s:.2f}× | {aa_s / bf_s:.2f}× |",
            flush=True,
        )


if __name__ == "__main__":
    main()
