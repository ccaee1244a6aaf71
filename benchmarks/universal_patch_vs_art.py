"""Universal patch: robustkit UniversalPatch vs IBM ART AdversarialPatchPyTorch, targeted, same budget, one run.

Same model (the project's Fashion-MNIST smallcnn, the cached checkpoint, trained with the default
recipe if missing), the same ``--fit`` training images, the same patch side, the same number of
optimisation steps (``--passes`` over the training images in mini-batches of ``--batch-size``: ART's
``max_iter`` is a pass over the data too) and the same Expectation over Transformation while fitting
(rotation ±``--rotation``°, scale 0.8–1.0 of the side, a random place per image), toward
``--target``. robustkit runs twice: in float32 like ART, and fitting in bfloat16 autocast (its
``precision`` setting; the held-out figure is computed in float32 for every patch). ART's patch is square (``patch_type="square"``), its learning rate ``--art-lr`` for
Adam on [0, 1] pixels (its default 5.0 assumes 0–255 pixels).

Held-out evaluation, the same for both: each patch is pasted as fitted (no rotation, no scaling) at
one random place per held-out test image, the places drawn once and shared, which is how robustkit
applies a universal patch and what the ``patch`` threat model verifies (ART's own ``apply_patch``
re-draws rotation, scale and place on every call). Targeted success is the share of the held-out
images not already classified as the target that the patch sends there.

    python benchmarks/universal_patch_vs_art.py [--side 8] [--fit 500] [--passes 10] [--held-out 1000] [--target 3]
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import torch
from torch import nn

from attacks import UniversalPatch
from attacks.universal_patch import patch_fooling_rate
from robustkit.data import get_dataset
from robustkit.weights.resolve import resolve_model


def robustkit_fit(model: nn.Module, x: torch.Tensor, args, precision: str = "fp32") -> torch.Tensor:
    attack = UniversalPatch(
        eps=args.side,
        passes=args.passes,
        batch_size=args.batch_size,
        target_class=args.target,
        max_rotation=args.rotation,
        min_scale=0.8,
        max_scale=1.0,
        seed=0,
        precision=precision,
    )
    return attack.fit(model, x, progress=False)


def robustkit_fit_bf16(model: nn.Module, x: torch.Tensor, args) -> torch.Tensor:
    return robustkit_fit(model, x, args, precision="bf16")


def art_fit(model: nn.Module, x: torch.Tensor, args) -> torch.Tensor:
    from art.attacks.evasion import AdversarialPatchPyTorch
    from art.estimators.classification import PyTorchClassifier

    classes = int(model(x[:1]).shape[1])
    classifier = PyTorchClassifier(
        model,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=classes,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    attack = AdversarialPatchPyTorch(
        classifier,
        rotation_max=args.rotation,
        scale_min=0.8,
        scale_max=1.0,
        learning_rate=args.art_lr,
        max_iter=args.passes,
        batch_size=args.batch_size,
        patch_shape=(x.shape[1], args.side, args.side),
        patch_type="square",
        targeted=True,
        verbose=False,
    )
    target = np.eye(classes, dtype=np.float32)[np.full(len(x), args.target)]
    patch, _ = attack.generate(x.numpy(), target)
    return torch.from_numpy(np.asarray(patch, dtype=np.float32)).clamp(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=8)
    parser.add_argument("--fit", type=int, default=500, help="training images both fit on")
    parser.add_argument("--passes", type=int, default=10, help="passes over them (ART: max_iter)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rotation", type=float, default=20.0, help="EoT rotation, ± degrees")
    parser.add_argument("--held-out", type=int, default=1000)
    parser.add_argument("--target", type=int, default=3)
    parser.add_argument("--art-lr", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both (0: torch's default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")  # the peer's deprecation notices
    if args.threads:
        torch.set_num_threads(args.threads)
    data = get_dataset("fashion-mnist")
    model = resolve_model("smallcnn", data, defense=None, device=torch.device("cpu")).model
    model.eval()
    fit = data.train.subset(args.fit, seed=0).images
    held_out = data.test.subset(args.held_out, seed=1).images
    places = torch.Generator().manual_seed(1)
    rows = torch.randint(0, held_out.shape[2] - args.side + 1, (len(held_out),), generator=places)
    cols = torch.randint(0, held_out.shape[3] - args.side + 1, (len(held_out),), generator=places)
    print(
        f"smallcnn, fashion-mnist: {args.side}×{args.side} patch toward class {args.target}, {args.fit} training "
        f"images × {args.passes} passes (batch {args.batch_size}), EoT ±{args.rotation:g}° scale 0.8–1.0; "
        f"{args.held_out} held-out images, patch pasted unrotated at shared random places; "
        f"{torch.get_num_threads()} CPU thread(s)"
    )
    print(f"{'attack':<30} {'targeted success':>16} {'seconds':>8} {'vs robustkit':>13}")
    ours = float("nan")
    runs = [
        ("robustkit UniversalPatch", robustkit_fit),
        ("robustkit UniversalPatch bf16", robustkit_fit_bf16),
        ("ART AdversarialPatchPyTorch", art_fit),
    ]
    for label, run in runs:
        start = time.perf_counter()
        try:
            patch = run(model, fit.clone(), args)
        except ImportError as err:
            print(f"{label:<30} skipped ({err.name} not installed: pip install adversarial-robustness-toolbox)")
            continue
        seconds = time.perf_counter() - start
        ours = seconds if label == "robustkit UniversalPatch" else ours
        rate = patch_fooling_rate(model, held_out, patch, rows, cols, target_class=args.target)
        print(f"{label:<30} {rate:>16.3f} {seconds:>8.1f} {seconds / ours:>12.1f}×", flush=True)


if __name__ == "__main__":
    main()
