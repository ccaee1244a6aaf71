"""Spatial attack (grid search): robustkit vs Foolbox SpatialAttack and IBM ART SpatialTransformation, same grid.

Same model, same correctly classified images, the same grid: ``--rotations`` angles in ±``--eps``°
and ``--translations`` shifts per axis in ±``--translation`` px (Engstrom et al.'s 31 × 5 × 5 by
default), untargeted. Every tool's output is re-scored here by one fresh forward pass; robust
accuracy is the share of the images still classified correctly. Model passes per image are counted
by a wrapper around the model. Peers that are not installed are skipped, with the reason.

    python benchmarks/spatial_vs_foolbox.py [--n 30] [--eps 30] [--translation 3] [--threads 1] [--colour]

One CPU thread by default: ART classifies one image per call, and on a shared 2-core machine the
start-up of a 2-thread pass (~70 ms under load, vs 2.5 ms on one thread) would swamp its timing.

What differs between the tools beyond speed (so robust accuracies can differ a little):
- robustkit: one bilinear resampling per transform, align_corners=False, black fill; a sample stops at
  the first angle (25 transforms) that fools it; images × transforms in batches of ``max_batch``.
- Foolbox: bilinear, align_corners=True (a "pixel" of shift is (W−1)/W of one); one pass of the whole
  batch per grid point, stopping only once every image is fooled.
- ART: SciPy shift then cubic-spline rotation, integer shifts (±1.5 px rounds to ±2), and it picks ONE
  transform for the whole batch it is given (a universal attack); here it is given one image at a time,
  so it searches the per-image worst case like the others, and it never stops early.
``--colour`` runs the same on a randomly initialised smallcnn for 3×32×32 images (random images,
labelled with its own predictions), for colour inputs.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import warnings

import torch
from torch import Tensor, nn

from attacks import SpatialAttack
from robustkit.data import get_dataset
from robustkit.models import get_model
from robustkit.predict import predict
from robustkit.weights.resolve import resolve_model


class Counting(nn.Module):
    """Counts images passed through the model (forward evaluations); optionally takes NHWC input."""

    def __init__(self, model: nn.Module, channels_last: bool = False):
        super().__init__()
        self.model, self.channels_last, self.count = model, channels_last, 0

    def forward(self, x: Tensor) -> Tensor:
        self.count += len(x)
        return self.model(x.permute(0, 3, 1, 2) if self.channels_last else x)


def robustkit_run(model, x, y, args):
    attack = SpatialAttack(
        eps=args.eps, translation=args.translation, rotations=args.rotations, translations=args.translations
    )
    return attack(model, x, y).x_adv


def foolbox_run(model, x, y, args):
    import foolbox

    fmodel = foolbox.PyTorchModel(model, bounds=(0, 1), device=x.device)
    attack = foolbox.attacks.SpatialAttack(
        max_translation=args.translation,
        max_rotation=args.eps,
        num_translations=args.translations,
        num_rotations=args.rotations,
        grid_search=True,
    )
    x_adv, _, _ = attack(fmodel, x, foolbox.criteria.Misclassification(y))
    return x_adv


def art_run(model, x, y, args):
    from art.attacks.evasion import SpatialTransformation
    from art.estimators.classification import PyTorchClassifier

    # ART reads the image height from axis 1, so it gets channels-last images; the wrapper permutes back
    nhwc = Counting(model.model, channels_last=True)
    classifier = PyTorchClassifier(
        nhwc,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[2:]) + (x.shape[1],),
        nb_classes=int(model.model(x[:1]).shape[1]),
        clip_values=(0.0, 1.0),
        channels_first=False,
        device_type="gpu" if x.is_cuda else "cpu",
    )
    percent = 100.0 * args.translation / x.shape[2]  # ART's translation is a share of the image size
    images = x.permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for image in images:  # a fresh attack per image: ART keeps the first transform it found for every later call
        attack = SpatialTransformation(
            classifier,
            max_translation=percent,
            num_translations=args.translations,
            max_rotation=args.eps,
            num_rotations=args.rotations,
            verbose=False,
        )
        out.append(torch.from_numpy(attack.generate(image[None])))
    model.count += nhwc.count
    return torch.cat(out).permute(0, 3, 1, 2).to(x.device)


def setting(colour: bool, n: int) -> tuple[str, nn.Module, Tensor, Tensor]:
    """The model and n images it classifies correctly: trained smallcnn on Fashion-MNIST, or random colour."""
    if colour:
        data = get_dataset("synthetic", channels=3, size=32, num_classes=10, n_test=4 * n)
        model = get_model("smallcnn", data.info, seed=0).eval()
        x = data.test.images[:n]
        return "smallcnn (random init), 3×32×32 random images", model, x, predict(model, x)
    data = get_dataset("fashion-mnist")
    model = resolve_model("smallcnn", data, defense=None, device=torch.device("cpu")).model
    pool = data.test.subset(2 * n, seed=0)
    correct = predict(model, pool.images) == pool.labels
    return "smallcnn, fashion-mnist", model, pool.images[correct][:n], pool.labels[correct][:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--eps", type=float, default=30.0, help="max rotation, degrees")
    parser.add_argument("--translation", type=float, default=3.0, help="max shift per axis, pixels")
    parser.add_argument("--rotations", type=int, default=31)
    parser.add_argument("--translations", type=int, default=5)
    parser.add_argument("--colour", action="store_true", help="random-init smallcnn on 3×32×32 random images")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for every tool (0: torch's default)")
    parser.add_argument("--skip", nargs="*", default=[], help="tools to leave out: foolbox art")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)  # the peers' deprecation notices
    if args.threads:
        torch.set_num_threads(args.threads)
    where, model, x, y = setting(args.colour, args.n)
    grid = args.rotations * args.translations**2
    print(
        f"{where}: {len(y)} correctly classified images, ±{args.eps:g}° × ±{args.translation:g} px, grid "
        f"{args.rotations} × {args.translations} × {args.translations} = {grid}, {torch.get_num_threads()} CPU threads"
    )
    print(f"{'attack':<28} {'robust acc':>10} {'seconds':>8} {'vs robustkit':>13} {'passes/img':>11}")
    tools = [
        ("robustkit SpatialAttack", robustkit_run),
        ("Foolbox SpatialAttack", foolbox_run),
        ("ART SpatialTransformation", art_run),
    ]
    ours = math.nan
    for label, run in tools:
        if label.split()[0].lower() in args.skip:
            continue
        counted = Counting(model).eval()
        start = time.perf_counter()
        try:
            x_adv = run(counted, x.clone(), y.clone(), args).float()
        except ImportError as err:
            print(
                f"{label:<28} skipped ({err.name} not installed: pip install {'foolbox' if 'Foolbox' in label else 'adversarial-robustness-toolbox'})"
            )
            continue
        seconds = time.perf_counter() - start
        ours = seconds if label.startswith("robustkit") else ours
        robust = (predict(model, x_adv) == y).float().mean().item()
        print(
            f"{label:<28} {robust:>10.3f} {seconds:>8.1f} {seconds / ours:>12.1f}× {counted.count / len(y):>11.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
