"""One epoch of Madry PGD training: robustkit vs IBM ART's AdversarialTrainerMadryPGD.

Same model (smallcnn, same initial weights), same training images, same inner PGD (L∞ ε, 7 steps
of 2.5·ε/7, random start), same optimizer (Adam, constant lr 1e-3) and batch size. robustkit runs
twice: in fp32 (like ART) and with its default bf16 autocast. Each trained model is then scored
with PGD-20 on the fixed 1000-image evaluation subset, with verified examples.

    python benchmarks/madry_vs_art.py [--n-train 10000] [--eps 0.1]
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
from torch import nn

from attacks import PGD
from defenses import MadryTraining
from robustkit.data import get_dataset
from robustkit.data.base import Split
from robustkit.evaluation.engine import evaluate_attack
from robustkit.models import get_model
from robustkit.training.loop import TrainConfig


def robustkit_epoch(model, train, args, precision: str) -> None:
    config = TrainConfig(
        epochs=1,
        batch_size=args.batch_size,
        optimizer="adam",
        lr=1e-3,
        schedule="constant",
        weight_decay=0.0,
        precision=precision,
        channels_last=precision != "fp32",
    )
    MadryTraining(eps=args.eps, steps=7).fit(model, train, config=config, progress=False)


def art_epoch(model, train, args, precision: str) -> None:
    from art.defences.trainer import AdversarialTrainerMadryPGD
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(
        model,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
        input_shape=tuple(train.images.shape[1:]),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    trainer = AdversarialTrainerMadryPGD(
        classifier,
        nb_epochs=1,
        batch_size=args.batch_size,
        eps=args.eps,
        eps_step=2.5 * args.eps / 7,
        max_iter=7,
        num_random_init=1,
    )
    trainer.fit(train.images.numpy(), train.labels.numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    data = get_dataset("fashion-mnist")
    train, subset = data.train.subset(args.n_train, seed=0), data.test.subset(1000, seed=0)
    contenders = [
        ("robustkit, fp32", robustkit_epoch, "fp32"),
        ("robustkit, bf16 (default)", robustkit_epoch, "auto"),
        ("ART AdversarialTrainerMadryPGD", art_epoch, "fp32"),
    ]
    print(
        f"smallcnn, fashion-mnist, {len(train)} training images, one epoch of PGD-7 L∞ ε={args.eps}, "
        f"Adam 1e-3, batch {args.batch_size}, {torch.get_num_threads()} threads"
    )
    print(f"{'trainer':<32} {'seconds':>8} {'img/s':>7} {'vs ART':>7} {'clean':>7} {'PGD-20 robust':>14}")
    rows = []
    for label, epoch, precision in contenders:
        model = get_model("smallcnn", data.info, seed=0)
        start = time.perf_counter()
        try:
            epoch(model, train, args, precision)
        except ImportError as err:
            print(f"{label:<32} skipped ({err.name} not installed)")
            continue
        seconds = time.perf_counter() - start
        result = evaluate_attack(
            model.eval(), Split(subset.images, subset.labels), PGD(eps=args.eps, steps=20), progress=False
        )
        rows.append((label, seconds, result.clean_accuracy, result.robust_accuracy))
    art = next((s for label, s, *_ in rows if label.startswith("ART")), float("nan"))
    for label, seconds, clean, robust in rows:
        print(
            f"{label:<32} {seconds:>8.1f} {len(train) / seconds:>7.0f} {art / seconds:>6.2f}× {clean:>7.4f} {robust:>14.4f}"
        )


if __name__ == "__main__":
    main()
