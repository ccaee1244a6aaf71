"""Randomized smoothing: robustkit's CERTIFY vs IBM ART's PyTorchRandomizedSmoothing, same model, same images.

Same base model (the cached Fashion-MNIST LeNet-5 trained with ``gaussian-aug`` at ``--sigma``; trained
with the default recipe if missing), the same seeded test images, the same σ, n0, n and α. Both add
unclipped N(0, σ²) noise and bound p_A with the one-sided Clopper–Pearson bound; they differ in the
noise draws (robustkit: seeded per image; ART: NumPy's global generator) and ART abstains only where the
bound is < 1/2 (the paper: ≤ 1/2), so per image the two agree up to sampling: the table gives the
certified accuracy of each at the radii with 95 % intervals, the mean certified radius, per-image
agreement of the prediction (abstentions included) and the median |radius difference|, and the time of
each, run one after the other in this process on the same threads.

    python benchmarks/smoothing_vs_art.py [--n 1000] [--n0 100] [--images 100] [--sigma 0.25] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import torch
from torch import nn

from defenses import GaussianAugmentation
from robustkit.certification.curve import certified_accuracy, correct_radii
from robustkit.certification.smoothing import Smoothing, certify
from robustkit.data import get_dataset
from robustkit.weights.resolve import resolve_model


def art_certify(
    model: nn.Module, x: torch.Tensor, smoothing: Smoothing, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    from art.estimators.certification.randomized_smoothing import (
        PyTorchRandomizedSmoothing,
    )

    classes = int(model(x[:1]).shape[1])
    smoothed = PyTorchRandomizedSmoothing(
        model,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=classes,
        device_type="cpu",
        sample_size=smoothing.n0,
        scale=smoothing.sigma,
        alpha=smoothing.alpha,
    )
    np.random.seed(0)
    return smoothed.certify(x.numpy(), n=smoothing.n, batch_size=batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="estimation draws per image")
    parser.add_argument("--n0", type=int, default=100, help="selection draws per image")
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1000, help="draws per forward pass, both")
    parser.add_argument("--radii", default="0,0.25,0.5")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both (0: torch's default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    data = get_dataset("fashion-mnist")
    model = resolve_model("lenet5", data, defense=GaussianAugmentation(sigma=args.sigma)).model.eval()
    chosen = data.test.choose(args.images, seed=0)
    subset = data.test.take(chosen).load()
    x, y = subset.images, subset.labels
    smoothing = Smoothing(sigma=args.sigma, n0=args.n0, n=args.n, alpha=args.alpha, batch_size=args.batch_size)
    radii = [float(r) for r in args.radii.split(",")]

    start = time.perf_counter()
    ours = certify(model, x, chosen, smoothing, seed=0)
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with torch.inference_mode():
        art_prediction, art_radius = art_certify(model, x, smoothing, args.batch_size)
    art_seconds = time.perf_counter() - start

    labels = y.tolist()
    mine = correct_radii(ours.radius.tolist(), ours.prediction.tolist(), labels)
    art_radius = [
        float(r) if p != -1 else float("nan")
        for p, r in zip(art_prediction.tolist(), art_radius.tolist(), strict=False)
    ]
    theirs = correct_radii(art_radius, art_prediction.tolist(), labels)
    agree = float(np.mean(ours.prediction.numpy() == art_prediction))
    both = (~ours.abstained).numpy() & (art_prediction != -1)
    gap = np.abs(ours.radius.numpy()[both] - np.asarray(art_radius)[both])
    draws = len(x) * (args.n0 + args.n)
    print(
        f"Fashion-MNIST lenet5 gaussian-aug σ={args.sigma:g}, {len(x)} test images, n0={args.n0}, n={args.n}, "
        f"α={args.alpha:g}, {torch.get_num_threads()} thread(s), largest certifiable radius {smoothing.max_radius:.4f}"
    )
    header = ["", *[f"cert. acc r={r:g} [95 % CI]" for r in radii], "mean radius", "seconds", "draws/s"]
    rows = []
    for name, radii_correct, radius, seconds in (
        ("robustkit", mine, ours.radius.tolist(), ours_seconds),
        ("ART", theirs, art_radius, art_seconds),
    ):
        cells = [f"{a:.3f} {i.text('.3f')}" for _, a, i in certified_accuracy(radii_correct, radii)]
        mean = np.mean([0.0 if np.isnan(r) else r for r in radius])  # an abstention certifies radius 0
        rows.append([name, *cells, f"{mean:.4f}", f"{seconds:.1f}", f"{draws / seconds:.0f}"])
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
    print(
        f"per image: same prediction (abstentions included) on {agree:.0%}; where both certify ({int(both.sum())}), "
        f"median |radius difference| {np.median(gap):.4f}, max {gap.max():.4f}; time ratio ART / robustkit "
        f"{art_seconds / ours_seconds:.2f}"
    )


if __name__ == "__main__":
    main()
