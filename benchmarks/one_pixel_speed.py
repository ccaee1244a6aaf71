"""One-pixel attack: robustkit vs torchattacks OnePixel and IBM ART PixelAttack, same budget.

Same model, same correctly classified images, 1 pixel, population ≈ 400, the same number of
generations, untargeted, DE without crossover. Success is re-scored here for everyone: at most k
pixels changed, values in range, misclassified by a fresh forward pass. Queries are forward
evaluations per image as each tool reports or as counted here by a wrapper around the model.

    python benchmarks/one_pixel_speed.py [--n 50] [--generations 20] [--pixels 1] [--device auto]

On a GPU the peers get their best case: each image's whole population in one forward pass.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
from torch import Tensor, nn

from attacks import OnePixel
from robustkit.data import get_dataset
from robustkit.device import resolve_device
from robustkit.predict import predict
from robustkit.weights.resolve import resolve_model


class Counting(nn.Module):
    """Counts images passed through the model (forward evaluations); ``scale`` maps a peer's pixel range to [0, 1]."""

    def __init__(self, model: nn.Module, scale: float = 1.0):
        super().__init__()
        self.model, self.scale, self.count = model, scale, 0

    def forward(self, x: Tensor) -> Tensor:
        self.count += len(x)
        return self.model(x * self.scale)


def robustkit_run(precision: str):
    def run(model, x, y, args):
        result = OnePixel(eps=args.pixels, population=400, generations=args.generations, precision=precision)(
            model, x, y
        )
        return result.x_adv

    return run


def torchattacks_run(model, x, y, args):
    import torchattacks

    per_pass = 400 if x.is_cuda else 256  # CPU: a cache-sized batch is faster (see OnePixel.max_batch)
    attack = torchattacks.OnePixel(model, pixels=args.pixels, steps=args.generations, popsize=400, inf_batch=per_pass)
    return attack(x, y)


def art_run(model, x, y, args):
    import numpy as np
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
        device_type="gpu" if x.is_cuda else "cpu",
    )
    attack = PixelAttack(classifier, th=args.pixels, es=1, max_iter=args.generations, verbose=False)
    adv = attack.generate((x * 255).cpu().numpy().astype(np.float32), y=y.cpu().numpy())
    model.count += scaled.count
    return torch.from_numpy(adv).to(x.device) / 255


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--pixels", type=int, default=1)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    device = resolve_device(args.device)
    data = get_dataset("fashion-mnist")
    model = resolve_model(args.model, data, defense=None, device=device).model
    pool = data.test.subset(4 * args.n, seed=0)
    images, labels = pool.images.to(device), pool.labels.to(device)
    correct = predict(model, images) == labels
    x, y = images[correct][: args.n], labels[correct][: args.n]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(
        f"{args.model}, fashion-mnist, {len(y)} correctly classified test images, {args.pixels} pixel(s), "
        f"population 400, {args.generations} generations, {where}"
    )
    print(f"{'attack':<30} {'seconds':>8} {'img/s':>7} {'vs fastest peer':>16} {'success':>8} {'queries/img':>12}")
    rows = []
    for label, run in [
        ("robustkit OnePixel, fp32", robustkit_run("fp32")),
        ("robustkit OnePixel, bf16", robustkit_run("bf16")),
        ("torchattacks OnePixel", torchattacks_run),
        ("ART PixelAttack (DE)", art_run),
    ]:
        counted = Counting(model).eval()
        start = time.perf_counter()
        try:
            x_adv = run(counted, x.clone(), y.clone(), args).float().to(device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        except ImportError as err:
            print(f"{label:<30} skipped ({err.name} not installed)")
            continue
        seconds = time.perf_counter() - start
        changed = ((x_adv - x).abs().amax(1) > 1e-6).flatten(1).sum(1)
        valid = (changed <= args.pixels) & (x_adv.flatten(1).min(1).values >= 0) & (x_adv.flatten(1).max(1).values <= 1)
        success = (valid & (predict(model, x_adv) != y)).float().mean().item()
        rows.append((label, seconds, success, counted.count / len(y)))
    fastest_peer = min((s for label, s, *_ in rows if not label.startswith("robustkit")), default=float("nan"))
    for label, seconds, success, queries in rows:
        print(
            f"{label:<30} {seconds:>8.1f} {len(y) / seconds:>7.2f} {fastest_peer / seconds:>15.2f}× {success:>8.3f} {queries:>12.0f}"
        )


if __name__ == "__main__":
    main()
