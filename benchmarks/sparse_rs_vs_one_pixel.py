"""Sparse-RS vs one-pixel attacks: success rate against queries, same model, same images, k = 1, 3, 10 pixels.

Three settings. Fashion-MNIST: the project's smallcnn (the cached checkpoint, trained with the default
recipe if missing), as in ``one_pixel_speed.py``; the same architecture Madry-trained, from the
checkpoint given with ``--madry-checkpoint`` (e.g. the Fashion-MNIST suite's; skipped without one, as
the default recipe's training takes long on a CPU). Colour: a CIFAR-sized 3×32×32 model (lenet5
trained 2 epochs on seeded synthetic data, 10 classes), so the peers' colour handling is exercised.
Both use the first ``--n`` correctly classified test images of a seeded pool.

Peers, untargeted, at one-pixel budgets: robustkit OnePixel (DE, population 100 × 10 generations),
torchattacks OnePixel (SciPy's DE per image: population ≈ popsize 100 × (steps 10 + 1), plus one
check of the best member per generation) and IBM ART PixelAttack (DE; its population is fixed near
400, so ``max_iter`` 2 gives ≈ 1200). Sparse-RS runs at ``--budgets`` and at the budget of the
best peer (the equal-budget row). Every success is re-scored here for every tool: at most k pixels
changed, values in [0, 1], misclassified by a fresh forward pass. Queries are forward evaluations per
image, counted by a wrapper around the model (robustkit's own label probe and final check included),
averaged over the images: a fooled image stops costing queries in every tool.

    python benchmarks/sparse_rs_vs_one_pixel.py [--n 100] [--pixels 1 3 10] [--budgets 10 30 100 300] [--no-peers]
        [--settings fashion-mnist madry colour] [--madry-checkpoint FILE]
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch
from one_pixel_speed import Counting  # benchmarks/, the script's folder: the one query counter
from torch import Tensor, nn

from attacks import OnePixel, SparseRS
from robustkit.data import get_dataset
from robustkit.models import get_model
from robustkit.predict import predict
from robustkit.training.loop import TrainConfig, train_model
from robustkit.weights.checkpoint import load_model
from robustkit.weights.resolve import resolve_model

POPULATION, GENERATIONS, ART_ITERATIONS = 100, 10, 2


def sparse_rs(budget: int):
    return lambda model, x, y, k: SparseRS(eps=k, queries=budget)(model, x, y).x_adv


def one_pixel(model, x, y, k):
    return OnePixel(eps=k, population=POPULATION, generations=GENERATIONS)(model, x, y).x_adv


def torchattacks_one_pixel(model, x, y, k):
    import torchattacks

    np.random.seed(0)  # SciPy's DE, vendored, draws from NumPy's global stream
    return torchattacks.OnePixel(model, pixels=k, steps=GENERATIONS, popsize=POPULATION, inf_batch=256)(x, y)


def art_pixel_attack(model, x, y, k):
    from art.attacks.evasion import PixelAttack
    from art.estimators.classification import PyTorchClassifier

    # ART casts candidate values to int, so it works on 0–255 images; the wrapper scales back
    scaled = Counting(model.model, scale=1 / 255)
    classifier = PyTorchClassifier(
        scaled,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=10,
        clip_values=(0.0, 255.0),
        device_type="cpu",
    )
    np.random.seed(0)
    attack = PixelAttack(classifier, th=k, es=1, max_iter=ART_ITERATIONS, verbose=False)
    adv = attack.generate((x * 255).numpy().astype(np.float32), y=y.numpy())
    model.count += scaled.count
    return torch.from_numpy(adv) / 255


def fashion_mnist(args) -> tuple[str, nn.Module, Tensor, Tensor]:
    data = get_dataset("fashion-mnist")
    model = resolve_model("smallcnn", data, defense=None, device=torch.device("cpu")).model
    return ("fashion-mnist smallcnn", model, *_correct(model, data.test, args.n))


def madry(args) -> tuple[str, nn.Module, Tensor, Tensor] | None:
    if args.madry_checkpoint is None:
        return None
    data = get_dataset("fashion-mnist")
    model, _ = load_model(args.madry_checkpoint, model="smallcnn", info=data.info)
    return ("fashion-mnist smallcnn madry", model, *_correct(model, data.test, args.n))


def colour(args) -> tuple[str, nn.Module, Tensor, Tensor]:
    data = get_dataset("synthetic", num_classes=10, channels=3, size=32, n_train=2048, n_test=4 * args.n, noise=0.5)
    model = get_model("lenet5", data.info, seed=0)
    train_model(
        model,
        data.train,
        TrainConfig(epochs=2, batch_size=64, lr=0.05, precision="fp32"),
        info=data.info,
        progress=False,
    )
    return ("colour 3×32×32 lenet5", model.eval(), *_correct(model, data.test, args.n))


SETTINGS = {"fashion-mnist": fashion_mnist, "madry": madry, "colour": colour}


def _correct(model: nn.Module, split, n: int) -> tuple[Tensor, Tensor]:
    pool = split.subset(min(4 * n, len(split)), seed=0)
    right = predict(model, pool.images) == pool.labels
    return pool.images[right][:n], pool.labels[right][:n]


def measure(run, model: nn.Module, x: Tensor, y: Tensor, k: int) -> tuple[float, float, float]:
    """Success rate (re-scored here), forward passes per image, seconds."""
    counted = Counting(model).eval()
    start = time.perf_counter()
    x_adv = run(counted, x.clone(), y.clone(), k).float()
    seconds = time.perf_counter() - start
    changed = ((x_adv - x).abs().amax(1) > 1e-6).flatten(1).sum(1)
    valid = (changed <= k) & (x_adv.flatten(1).amin(1) >= 0) & (x_adv.flatten(1).amax(1) <= 1)
    success = (valid & (predict(model, x_adv) != y)).float().mean().item()
    return success, counted.count / len(y), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="correctly classified images per setting")
    parser.add_argument("--pixels", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 30, 100, 300], help="sparse-rs query budgets")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument(
        "--madry-checkpoint", help="a Madry-trained Fashion-MNIST smallcnn checkpoint (the madry setting)"
    )
    parser.add_argument("--no-peers", action="store_true", help="sparse-rs and robustkit OnePixel only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)

    peers = [("robustkit OnePixel (DE)", POPULATION * (GENERATIONS + 1), one_pixel)]
    if not args.no_peers:
        peers += [
            ("torchattacks OnePixel", POPULATION * (GENERATIONS + 1), torchattacks_one_pixel),
            ("ART PixelAttack (DE)", 400 * (ART_ITERATIONS + 1), art_pixel_attack),
        ]
    print(f"{torch.get_num_threads()} CPU threads; success re-scored here; queries = counted forward passes per image")
    header = (
        f"{'setting':<24} {'k':>3} {'attack':<26} {'budget/img':>10} {'queries/img':>11} {'success':>8} {'seconds':>8}"
    )
    summary = []
    for setting in args.settings:
        chosen = SETTINGS[setting](args)
        if chosen is None:
            print(f"\n{setting}: skipped (no --madry-checkpoint given)")
            continue
        name, model, x, y = chosen
        print(f"\n{name}: {len(y)} correctly classified test images")
        print(header)
        for k in args.pixels:
            rows = []
            for label, budget, run in peers:
                try:
                    rows.append((label, budget, *measure(run, model, x, y, k)))
                except ImportError as err:
                    print(f"{name:<24} {k:>3} {label:<26} skipped ({err.name} not installed)")
                    continue
                _print(name, k, *rows[-1])
            best = max(rows, key=lambda r: (r[2], -r[3]))  # highest success, then fewest queries
            equal = best[1]
            ours = []
            for budget in sorted(set(args.budgets) | {equal}):
                label = "sparse-rs" + (" (equal budget)" if budget == equal else "")
                ours.append((label, budget, *measure(sparse_rs(budget), model, x, y, k)))
                _print(name, k, *ours[-1])
            summary.append((name, k, best, ours, equal))
    print(
        "\nTarget: sparse-rs reaches the best peer's success with ≤ 1/10 of its queries, and beats it at equal budget"
    )
    for name, k, best, ours, equal in summary:
        reach = next((r for r in ours if r[2] >= best[2]), None)
        at_equal = next(r for r in ours if r[1] == equal)
        if best[2] == 0:
            verdict = "no peer fooled any image: nothing to compare against (use more images or a larger k)"
        elif reach is None:
            verdict = f"sparse-rs never reached {best[2]:.3f} within {ours[-1][1]} queries"
        else:
            verdict = (
                f"sparse-rs reaches it at budget {reach[1]} ({reach[3]:.0f} queries/img, "
                f"{best[3] / reach[3]:.1f}× fewer: {'met' if reach[3] * 10 <= best[3] else 'NOT met'})"
            )
        print(
            f"{name}, k={k}: best peer {best[0]} {best[2]:.3f} at {best[3]:.0f} queries/img; {verdict}; "
            f"equal budget {equal}: sparse-rs {at_equal[2]:.3f} vs {best[2]:.3f} "
            f"({'higher' if at_equal[2] > best[2] else 'NOT higher'})"
        )


def _print(name: str, k: int, label: str, budget: int, success: float, queries: float, seconds: float) -> None:
    print(f"{name:<24} {k:>3} {label:<26} {budget:>10} {queries:>11.0f} {success:>8.3f} {seconds:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
