"""PGD speed and strength: robustkit vs torchattacks, IBM ART and Foolbox, and vs the limit.

The limit is k bare forward+backward passes (gradient w.r.t. the input) over the same images:
no attack can do k steps faster. Every attack gets the same model, images, ε, step size, steps and
a random start; every result is re-scored here by one verifier (inside the ε-ball, inside [0, 1],
a fresh forward pass). Peers that are not installed are skipped (``pip install -e '.[peers]'``).

    python benchmarks/pgd_speed.py [--model smallcnn] [--n 1000] [--steps 20] [--eps 0.1]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks import PGD
from robustkit.data import get_dataset
from robustkit.predict import predict
from robustkit.weights.resolve import resolve_model


def limit(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, steps: int) -> Tensor:
    for _ in range(steps):
        xg = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xg), y), xg)
    return x


def robustkit_pgd(early_stop: bool) -> Callable:
    def run(model, x, y, eps, alpha, steps):
        return PGD(eps=eps, steps=steps, step_size=alpha, early_stop=early_stop)(model, x, y).x_adv

    return run


def torchattacks_pgd(model, x, y, eps, alpha, steps):
    import torchattacks

    return torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)


def art_pgd(model, x, y, eps, alpha, steps):
    import numpy as np
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(
        model,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=int(model(x[:1]).shape[1]),
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    attack = ProjectedGradientDescent(
        classifier,
        norm=np.inf,
        eps=eps,
        eps_step=alpha,
        max_iter=steps,
        num_random_init=1,
        batch_size=len(x),
        verbose=False,
    )
    return torch.from_numpy(attack.generate(x.numpy(), y=y.numpy()))


def foolbox_pgd(model, x, y, eps, alpha, steps):
    import foolbox

    fmodel = foolbox.PyTorchModel(model, bounds=(0, 1))
    attack = foolbox.attacks.LinfPGD(abs_stepsize=alpha, steps=steps, random_start=True)
    _, clipped, _ = attack(fmodel, x, y, epsilons=eps)
    return clipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings (shared, noisy machines)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    alpha = 2.5 * args.eps / args.steps

    data = get_dataset("fashion-mnist")
    found = resolve_model(args.model, data, device=torch.device("cpu"))
    model, path = found.model, found.provenance.path
    subset = data.test.subset(args.n, seed=0)
    contenders = {
        "limit (k fwd+bwd)": limit,
        "robustkit PGD": robustkit_pgd(early_stop=False),
        "robustkit PGD, early stop": robustkit_pgd(early_stop=True),
        "torchattacks PGD": torchattacks_pgd,
        "ART PGD": art_pgd,
        "Foolbox LinfPGD": foolbox_pgd,
    }
    print(
        f"{args.model} ({path.name}), fashion-mnist, n={args.n}, L∞ ε={args.eps}, {args.steps} steps of "
        f"{alpha:.4g}, batch {args.batch_size}, {torch.get_num_threads()} threads"
    )
    print(f"{'attack':<28} {'seconds':>8} {'vs limit':>9} {'robust acc':>11} {'outside ball':>13}")
    limit(model, subset.images[: args.batch_size], subset.labels[: args.batch_size], 0, 0, 2)  # warm-up
    best: dict[str, tuple[float, Tensor]] = {}
    for _ in range(args.repeats):  # round-robin, so drift in the machine's speed hits everyone alike
        for label, run in contenders.items():
            try:
                timing = _timed(run, model, subset, args, alpha)
            except ImportError as err:
                best[label] = (float("nan"), err.name)
                continue
            best[label] = min(best.get(label, timing), timing, key=lambda t: t[0])
    base = best["limit (k fwd+bwd)"][0]
    for label, (seconds, x_adv) in best.items():
        if isinstance(x_adv, str):
            print(f"{label:<28} skipped ({x_adv} not installed)")
            continue
        outside = ((x_adv - subset.images).flatten(1).abs().amax(1) > args.eps + 1e-6) | (x_adv.min() < 0)
        robust = (predict(model, x_adv) == subset.labels) | outside  # an invalid example breaks nothing
        acc = "—" if label.startswith("limit") else f"{robust.float().mean():.4f}"
        print(f"{label:<28} {seconds:>8.2f} {seconds / base:>8.2f}× {acc:>11} {int(outside.sum()):>13}", flush=True)


def _timed(run: Callable, model: nn.Module, subset, args, alpha: float) -> tuple[float, Tensor]:
    torch.manual_seed(0)
    chunks, start = [], time.perf_counter()
    for lo in range(0, args.n, args.batch_size):
        x, y = subset.images[lo : lo + args.batch_size], subset.labels[lo : lo + args.batch_size]
        chunks.append(run(model, x, y, args.eps, alpha, args.steps))
    return time.perf_counter() - start, torch.cat(chunks).float()


if __name__ == "__main__":
    main()
